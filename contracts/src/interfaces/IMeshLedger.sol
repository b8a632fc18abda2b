// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

/// @title IMeshLedger (protocol v2)
/// @notice The provenance ledger of a consortium training run: which contributor submitted which model update
/// (by content digest), the scores every validator of the round's frozen validator set committed and revealed,
/// the consensus the contract computed from them, which updates each round's aggregate used, and the reputation
/// and rewards that followed. Errors, events and types live here so that clients, the event index and auditors
/// can decode everything from this one file. docs/protocol.md gives the rules (R1–R7) and why; docs/contracts.md
/// describes this contract.
/// @dev Digests are the 32-byte sha-256 inside a CIDv0 (`0x1220 || digest`), never a CID string.
/// Constants (public on MeshLedger): SCORE_ONE = 10_000 (scores are int16 in [-SCORE_ONE, SCORE_ONE]);
/// MAX_UPDATES_PER_ROUND = 112; MAX_VALIDATORS = 32; REPUTATION_MIN/MAX/START = 100/10_000/5_000;
/// CONTRIBUTOR_GAIN = 500 and CONTRIBUTOR_LOSS = 1_500 (scaled by |c| / SCORE_ONE); VALIDATOR_GAIN = 200,
/// VALIDATOR_LOSS = 1_000, ABSENT_LOSS = 500, DISTANCE_FLOOR = 200, DISTANCE_TOLERANCE = 3; VALIDATOR_SHARE_BPS = 1_000;
/// MAX_PAUSE = 3 days; MAX_SAMPLES_CAP = 2**32. `roleDelay` is fixed at deployment (constructor argument).
/// Times: every round time (openedAt, submissionEnd, commitEnd, revealEnd, graceEnd, closedAt) is LEDGER time:
/// wall time minus the time the ledger spent paused (see {clock}). Signature deadlines and role-change delays
/// are wall time (`block.timestamp`).
interface IMeshLedger {
    // ─── Types ──────────────────────────────────────────────────────────────────────────────────────────────

    /// @notice Where a round stands. Rounds only move forward: Open → Commit → Reveal → Closed → Finalized.
    /// @dev None: the round does not exist (yet). Open: submissions accepted. Commit: submissions closed (window
    /// over, every contributor submitted, or the round full); validators of the round's set commit their score
    /// hashes. Reveal: the commit window is over (or every set member committed); committers reveal. Closed: the
    /// reveal window is over (or every committer revealed); waiting for the aggregator (or, after the grace, for
    /// anyone's carry-over). Finalized: the aggregate is recorded.
    enum Phase {
        None,
        Open,
        Commit,
        Reveal,
        Closed,
        Finalized
    }

    /// @notice Which of an account's two reputations (and reward kinds) a settlement is about.
    enum Role {
        Contributor,
        Validator
    }

    /// @notice A task's configuration, fixed at creation.
    /// @param specDigest sha-256 digest of the task specification file (model, data, checks), as in a CIDv0.
    /// @param genesisDigest digest of the initial model: the base of round 1.
    /// @param rule aggregation rule: 0 fedavg (weighted by consensus score), 1 trimmed mean, 2 coordinate-wise
    /// median, 3 multi-krum.
    /// @param ruleParam packed rule parameters: bits 0-15 the rule's argument (trimmed mean: fraction trimmed
    /// from each side in basis points, 1..4999; multi-krum: f, the number of faulty updates tolerated;
    /// fedavg and median: 0); bits 16-31 the L2 norm clip applied to each update first, in thousandths
    /// (0 = no clipping).
    /// @param quorum validators of the round's set that must reveal for any update to be accepted
    /// (1 ≤ quorum ≤ number of validators when the task is created).
    /// @param submissionWindow seconds (ledger time) a round accepts submissions after it opens.
    /// @param commitWindow seconds (ledger time) score commitments are accepted after submissions close.
    /// @param revealWindow seconds (ledger time) reveals are accepted after the commit phase ends.
    /// @param finalizeGrace seconds (ledger time) after the reveal window during which only the aggregator can
    /// end the round; afterwards anyone may carry it over ({finalizeCarryOver}).
    /// @param maxSamples the largest sample count a submission may claim (1 ≤ maxSamples ≤ 2**32); recorded for
    /// the audit only, it weighs nothing.
    /// @param rewardPerRound tokens (base units) accrued at most per finalized round (< 2**96).
    struct TaskParams {
        bytes32 specDigest;
        bytes32 genesisDigest;
        uint8 rule;
        uint32 ruleParam;
        uint16 quorum;
        uint32 submissionWindow;
        uint32 commitWindow;
        uint32 revealWindow;
        uint32 finalizeGrace;
        uint64 maxSamples;
        uint128 rewardPerRound;
    }

    /// @notice A round as clients see it. All times are ledger time.
    /// @dev For a finalized round only `phase`, `baseDigest` and `aggregateDigest` are kept on chain (the other
    /// fields are zero): its submissions, scores and settlement live in the logs.
    /// @param submissionEnd when submissions closed or will close (early when every contributor submitted).
    /// @param commitEnd when the commit phase ended or will end (early when every set member committed).
    /// @param revealEnd when the reveal window ends (commitEnd + revealWindow); the round is `finalizable`
    /// earlier once the commit phase is over and every committer revealed.
    /// @param graceEnd revealEnd + finalizeGrace: from then on anyone may carry the round over.
    /// @param validatorCount size of the round's validator set (frozen at round open).
    /// @param finalizable the reveal phase is over (window ended, or every committer revealed after the commit
    /// phase ended) and the round is not finalized.
    struct RoundView {
        Phase phase;
        bytes32 baseDigest;
        bytes32 aggregateDigest;
        uint64 openedAt;
        uint64 submissionEnd;
        uint64 commitEnd;
        uint64 revealEnd;
        uint64 graceEnd;
        uint16 submissionCount;
        uint8 validatorCount;
        uint8 commitCount;
        uint8 revealCount;
        bool finalizable;
    }

    /// @notice A submission relayed for `contributor`, with its EIP-712 signature over
    /// `Submission(uint256 taskId,uint32 round,bytes32 digest,uint64 numSamples,uint64 nonce,uint64 deadline)`
    /// in the domain `MeshLedger`, version `2`, this chain id and this contract. `deadline` is wall time.
    struct SignedSubmission {
        address contributor;
        bytes32 digest;
        uint64 numSamples;
        uint64 nonce;
        uint64 deadline;
        uint8 v;
        bytes32 r;
        bytes32 s;
    }

    /// @notice What finalization did for one participant of the round.
    /// @param reputation the participant's new `role` reputation.
    /// @param reward the reward accrued to it (0 when it earned none, and always 0 on a carry-over).
    /// @param score contributors: the consensus c_i of its update; validators: 0.
    /// @param distance validators: mean over the round's updates of min(|s - c|, SCORE_ONE) (0 when absent or
    /// when the round had no update); contributors: 0.
    /// @param absent validators: it did not reveal (it did not commit, or committed and did not reveal);
    /// contributors: false.
    struct Settlement {
        address account;
        Role role;
        uint32 reputation;
        uint256 reward;
        int16 score;
        uint16 distance;
        bool absent;
    }

    /// @notice Everything the ledger keeps about one address.
    /// @param memberNumber the member's permanent seat number (0 = never a contributor or validator).
    /// @param accrued rewards accrued and not yet claimed ({claimRewards} mints them).
    struct AccountView {
        uint64 nonce;
        uint32 contributorReputation;
        uint32 validatorReputation;
        uint16 memberNumber;
        bool contributor;
        bool validator;
        bool aggregator;
        uint128 accrued;
    }

    // ─── Errors ─────────────────────────────────────────────────────────────────────────────────────────────

    /// @notice The token address given to the constructor is zero.
    error MeshLedger_ZeroToken();

    /// @notice The admin address given to the constructor is zero.
    error MeshLedger_ZeroAdmin();

    /// @notice `account` does not hold the contributor role.
    error MeshLedger_NotContributor(address account);

    /// @notice `account` does not hold the aggregator role.
    error MeshLedger_NotAggregator(address account);

    /// @notice `account` is not in the validator set frozen when round `round` of `taskId` opened (holding the
    /// validator role now is not enough: the set of the next round will include it).
    error MeshLedger_NotInValidatorSet(uint256 taskId, uint32 round, address account);

    /// @notice `account` holds `heldRole`, which excludes `requestedRole` (a contributor may not validate).
    error MeshLedger_RoleConflict(address account, bytes32 heldRole, bytes32 requestedRole);

    /// @notice Granting the validator role would exceed `max` validators (a round's set holds at most `max`).
    error MeshLedger_TooManyValidators(uint256 max);

    /// @notice Every member seat number (up to `max`) is taken.
    error MeshLedger_TooManyMembers(uint256 max);

    /// @notice A task exists, so granting or revoking `role` for `account` must go through
    /// {scheduleRoleChange} and wait `roleDelay` (renouncing one's own role stays immediate).
    error MeshLedger_RoleChangeDelayed(bytes32 role, address account);

    /// @notice The same role change is already scheduled, executable from `executeAfter` (wall time).
    error MeshLedger_RoleChangePending(bytes32 role, address account, bool grant, uint64 executeAfter);

    /// @notice No such role change is scheduled (never scheduled, cancelled, or already executed).
    error MeshLedger_RoleChangeNotScheduled(bytes32 role, address account, bool grant);

    /// @notice The role change can only be executed from `executeAfter` (wall time); now is `timestamp`.
    error MeshLedger_RoleChangeNotReady(bytes32 role, address account, bool grant, uint64 executeAfter, uint256 timestamp);

    /// @notice No task has id `taskId`.
    error MeshLedger_UnknownTask(uint256 taskId);

    /// @notice `digest` is not an acceptable content digest (the zero digest names no content).
    error MeshLedger_InvalidDigest(bytes32 digest);

    /// @notice `rule` is not a known aggregation rule or `ruleParam` does not fit it.
    error MeshLedger_InvalidRule(uint8 rule, uint32 ruleParam);

    /// @notice A quorum of zero validators cannot be used (it must be at least 1).
    error MeshLedger_InvalidQuorum(uint16 quorum);

    /// @notice The quorum `quorum` exceeds the `validators` validators holding the role now: no round could ever
    /// accept an update. Grant validators first, or lower the quorum.
    error MeshLedger_QuorumAboveValidators(uint16 quorum, uint256 validators);

    /// @notice Every window and the finalize grace must be at least one second.
    error MeshLedger_InvalidWindows(
        uint32 submissionWindow, uint32 commitWindow, uint32 revealWindow, uint32 finalizeGrace
    );

    /// @notice `maxSamples` must be between 1 and `cap` (2**32).
    error MeshLedger_InvalidMaxSamples(uint64 maxSamples, uint64 cap);

    /// @notice `rewardPerRound` must be below `cap` (2**96).
    error MeshLedger_InvalidReward(uint128 rewardPerRound, uint128 cap);

    /// @notice The call names `round` but task `taskId` is in round `currentRound`.
    error MeshLedger_WrongRound(uint256 taskId, uint32 currentRound, uint32 round);

    /// @notice Per-round detail of `round` is only kept while it is the live round (`currentRound`); read the
    /// logs for earlier rounds.
    error MeshLedger_RoundNotLive(uint256 taskId, uint32 round, uint32 currentRound);

    /// @notice Task `taskId` has no round `round` (yet).
    error MeshLedger_UnknownRound(uint256 taskId, uint32 round);

    /// @notice Submissions to the round closed at `submissionEnd` (ledger time).
    error MeshLedger_SubmissionsClosed(uint256 taskId, uint32 round, uint64 submissionEnd);

    /// @notice The live round has `submissionCount` updates: there is no update `index`.
    error MeshLedger_UnknownUpdate(uint256 taskId, uint32 round, uint16 index, uint16 submissionCount);

    /// @notice `contributor` already submitted an update to this round.
    error MeshLedger_AlreadySubmitted(uint256 taskId, uint32 round, address contributor);

    /// @notice An update must be trained on at least one sample.
    error MeshLedger_InvalidSamples(address contributor, uint64 numSamples);

    /// @notice `contributor` claims `numSamples` samples, more than the task's `maxSamples`.
    error MeshLedger_TooManySamples(address contributor, uint64 numSamples, uint64 maxSamples);

    /// @notice A batch must hold at least one item.
    error MeshLedger_EmptyBatch();

    /// @notice The signature of `contributor` expired at `deadline` (now is `timestamp`, wall time).
    error MeshLedger_SignatureExpired(address contributor, uint64 deadline, uint256 timestamp);

    /// @notice The signed nonce `given` is not `contributor`'s next nonce `expected`.
    error MeshLedger_InvalidNonce(address contributor, uint64 expected, uint64 given);

    /// @notice The signature recovers to `recovered`, not `contributor` (wrong key, wrong chain or altered data).
    error MeshLedger_InvalidSignature(address contributor, address recovered);

    /// @notice Commitments open when submissions close, at `submissionEnd` (ledger time).
    error MeshLedger_CommitNotOpen(uint256 taskId, uint32 round, uint64 submissionEnd);

    /// @notice The commit phase ended at `commitEnd` (ledger time): a late commitment is refused.
    error MeshLedger_CommitClosed(uint256 taskId, uint32 round, uint64 commitEnd);

    /// @notice `validator` already committed in this round (a commitment cannot be replaced).
    error MeshLedger_AlreadyCommitted(uint256 taskId, uint32 round, address validator);

    /// @notice Reveals open when the commit phase ends, at `commitEnd` (ledger time).
    error MeshLedger_RevealNotOpen(uint256 taskId, uint32 round, uint64 commitEnd);

    /// @notice The reveal window ended at `revealEnd` (ledger time).
    error MeshLedger_RevealClosed(uint256 taskId, uint32 round, uint64 revealEnd);

    /// @notice `validator` did not commit in this round, so it has nothing to reveal.
    error MeshLedger_NotCommitted(uint256 taskId, uint32 round, address validator);

    /// @notice `validator` already revealed in this round.
    error MeshLedger_AlreadyRevealed(uint256 taskId, uint32 round, address validator);

    /// @notice The revealed scores, reasons and salt hash to `computed`, not to the commitment `committed`
    /// (see {scoreCommitment} for the encoding).
    error MeshLedger_RevealMismatch(
        uint256 taskId, uint32 round, address validator, bytes32 committed, bytes32 computed
    );

    /// @notice A reveal carries 2 bytes of scores and 1 byte of reason per update of the round:
    /// `expectedScoreBytes` and `expectedReasonBytes`, not `givenScoreBytes` and `givenReasonBytes`.
    error MeshLedger_RevealLength(
        uint256 expectedScoreBytes, uint256 givenScoreBytes, uint256 expectedReasonBytes, uint256 givenReasonBytes
    );

    /// @notice The score of update `index` is `score`, outside [-10_000, 10_000].
    error MeshLedger_InvalidScore(uint16 index, int16 score);

    /// @notice Update `index` has the nonzero reason code `reason` (a hard reject) but the score `score`: a hard
    /// reject must score -10_000.
    error MeshLedger_InvalidReason(uint16 index, int16 score, uint8 reason);

    /// @notice The round cannot be finalized before the reveal phase is over, at `revealEnd` at the latest
    /// (ledger time), or earlier once the commit phase ended and every committer revealed.
    error MeshLedger_FinalizeTooEarly(uint256 taskId, uint32 round, uint64 revealEnd);

    /// @notice Anyone may carry the round over only from `graceEnd` (ledger time); the ledger clock is at
    /// `ledgerNow`. Until then the aggregator finalizes.
    error MeshLedger_GraceNotOver(uint256 taskId, uint32 round, uint64 graceEnd, uint64 ledgerNow);

    /// @notice With no update accepted the model carries over: the aggregate must be the base `baseDigest`.
    error MeshLedger_AggregateMustBeBase(bytes32 baseDigest, bytes32 aggregateDigest);

    /// @notice `account` has no accrued reward to claim.
    error MeshLedger_NothingToClaim(address account);

    /// @notice The ledger is paused (submissions, commits, reveals and finalization wait); the pause lapses by
    /// itself at `lapsesAt` (wall time) unless the admin unpauses earlier.
    error MeshLedger_Paused(uint64 lapsesAt);

    /// @notice The ledger is not paused (never paused, unpaused, or the last pause lapsed).
    error MeshLedger_NotPaused();

    /// @notice Another pause can start only from `pausableAt` (wall time): MAX_PAUSE after the last one ended.
    error MeshLedger_PauseCooldown(uint64 pausableAt, uint256 timestamp);

    // ─── Events ─────────────────────────────────────────────────────────────────────────────────────────────

    /// @notice `admin` created task `taskId` with `params` (round 1 opens in the same transaction).
    event TaskCreated(uint256 indexed taskId, address indexed admin, TaskParams params);

    /// @notice Round `round` of `taskId` opened at `openedAt` (ledger time) on base model `baseDigest`; `by` is
    /// the admin (round 1), the aggregator that finalized the previous round, or whoever carried it over.
    /// `validators` is the round's validator set, frozen now, and `weights` their validator reputations now:
    /// only they may commit and reveal, and only these weights count, whatever happens to roles meanwhile.
    event RoundOpened(
        uint256 indexed taskId,
        uint32 indexed round,
        address indexed by,
        bytes32 baseDigest,
        uint64 openedAt,
        address[] validators,
        uint16[] weights
    );

    /// @notice `contributor` submitted update number `index` of the round: content `digest`, trained on
    /// `numSamples` samples (audit only). `relayer` sent the transaction (the contributor when not relayed).
    event UpdateSubmitted(
        uint256 indexed taskId,
        uint32 indexed round,
        address indexed contributor,
        uint16 index,
        bytes32 digest,
        uint64 numSamples,
        address relayer
    );

    /// @notice Submissions closed early at `closedAt` (ledger time): `lastContributor`'s was the last one the
    /// round waited for (or it filled the round).
    event SubmissionsClosed(
        uint256 indexed taskId,
        uint32 indexed round,
        address indexed lastContributor,
        uint16 submissionCount,
        uint64 closedAt
    );

    /// @notice `validator` bound its scores of the round with `commitment` (see {scoreCommitment}).
    event ScoresCommitted(uint256 indexed taskId, uint32 indexed round, address indexed validator, bytes32 commitment);

    /// @notice `validator` revealed its scores: `scores` holds one big-endian int16 per update (index order),
    /// `reasons` one reason code (ledger/reasons.py) per update, 0 unless a hard reject.
    event ScoresRevealed(
        uint256 indexed taskId, uint32 indexed round, address indexed validator, bytes scores, bytes reasons
    );

    /// @notice The round ended: `aggregateDigest` is the aggregate, by rule `rule` with `ruleParam`, of the
    /// updates whose bits are set in `acceptedBitmap` (consensus > 0 and enough reveals). `by` is the aggregator,
    /// or whoever carried the round over (`carriedOver`: the aggregate is the base and no reward accrued).
    /// `settlements` lists every contributor with an update in the round (update-index order), then every
    /// member of the round's validator set (set order), with new reputations and accrued rewards.
    /// @dev One event per round instead of one per participant: a log costs 375 gas plus 375 per topic.
    event RoundFinalized(
        uint256 indexed taskId,
        uint32 indexed round,
        address indexed by,
        bytes32 aggregateDigest,
        uint256 acceptedBitmap,
        uint8 rule,
        uint32 ruleParam,
        bool carriedOver,
        Settlement[] settlements
    );

    /// @notice `account` claimed (the ledger minted to it) `amount` of its accrued rewards.
    event RewardsClaimed(address indexed account, uint256 amount);

    /// @notice A role grant gave `account` its starting `role` reputation `reputation` (only the first grant of a
    /// role does: revoking and re-granting keeps the reputation earned).
    event ReputationInitialized(address indexed account, Role role, uint32 reputation);

    /// @notice The admin scheduled granting (`grant`) or revoking `role` for `account`; anyone may execute it
    /// from `executeAfter` (wall time), the admin may cancel it until then.
    event RoleChangeScheduled(bytes32 indexed role, address indexed account, bool grant, uint64 executeAfter);

    /// @notice The admin cancelled the scheduled role change.
    event RoleChangeCancelled(bytes32 indexed role, address indexed account, bool grant);

    /// @notice `account` (the admin) paused the ledger; the pause lapses by itself MAX_PAUSE later.
    event Paused(address account);

    /// @notice `account` (the admin) ended the pause before it lapsed.
    event Unpaused(address account);

    // ─── Administration ─────────────────────────────────────────────────────────────────────────────────────

    /// @notice Create a task and open its round 1 on the genesis model, freezing its validator set.
    /// @dev Requirements: caller has the admin role; digests nonzero; rule known and `ruleParam` fits it;
    /// 1 ≤ quorum ≤ validators().length; every window and the grace ≥ 1 s; 1 ≤ maxSamples ≤ 2**32;
    /// rewardPerRound < 2**96. Emits {TaskCreated} and {RoundOpened}.
    /// @return taskId the new task's id (ids start at 1).
    function createTask(TaskParams calldata params) external returns (uint256 taskId);

    /// @notice Stop submissions, commits, reveals and finalization, and stop the ledger clock: no window runs
    /// while paused. The pause lapses by itself after MAX_PAUSE.
    /// @dev Requirements: caller has the admin role; not paused; MAX_PAUSE has passed since the last pause
    /// ended (else {MeshLedger_PauseCooldown}). Emits {Paused}.
    function pause() external;

    /// @notice End the pause before it lapses; every window resumes where it stood.
    /// @dev Requirement: caller has the admin role; paused. Emits {Unpaused}.
    function unpause() external;

    /// @notice Whether the ledger is paused now (a lapsed pause is over).
    function paused() external view returns (bool);

    /// @notice Schedule granting (`grant`) or revoking `role` for `account`, executable by anyone `roleDelay`
    /// seconds (wall time) from now.
    /// @dev Requirements: caller has the admin role; the same change is not pending. Emits {RoleChangeScheduled}.
    /// @return executeAfter the wall time from which {executeRoleChange} succeeds.
    function scheduleRoleChange(bytes32 role, address account, bool grant) external returns (uint64 executeAfter);

    /// @notice Carry out a scheduled role change whose delay is over. Anyone may call.
    /// @dev Emits {IAccessControl-RoleGranted} or {IAccessControl-RoleRevoked} (when it changes anything).
    function executeRoleChange(bytes32 role, address account, bool grant) external;

    /// @notice Cancel a scheduled role change before it executes.
    /// @dev Requirement: caller has the admin role. Emits {RoleChangeCancelled}.
    function cancelRoleChange(bytes32 role, address account, bool grant) external;

    // ─── Submissions ────────────────────────────────────────────────────────────────────────────────────────

    /// @notice Record the caller's update `digest`, trained on `numSamples` samples, in `round` of `taskId`.
    /// @dev Requirements: not paused; caller is a contributor; `round` is the task's open round; the caller has
    /// not submitted to it; digest nonzero (the same digest from two members is recorded twice: the update
    /// file names its author); 1 ≤ numSamples ≤ maxSamples. Emits {UpdateSubmitted}, and {SubmissionsClosed}
    /// when this was the last contributor to submit or filled the round (MAX_UPDATES_PER_ROUND updates).
    /// @return index the update's number within the round (0-based): its place in every validator's scores.
    function submitUpdate(uint256 taskId, uint32 round, bytes32 digest, uint64 numSamples)
        external
        returns (uint16 index);

    /// @notice Record an update signed by `sub.contributor` (EIP-712), relayed by anyone.
    /// @dev As {submitUpdate}, plus: `sub.deadline` not passed; `sub.nonce` is the contributor's next nonce
    /// (consumed); the signature recovers to `sub.contributor`.
    /// @return index the update's number within the round.
    function submitUpdateFor(uint256 taskId, uint32 round, SignedSubmission calldata sub)
        external
        returns (uint16 index);

    /// @notice Record many signed updates in one transaction, all or none.
    /// @dev As {submitUpdateFor} for each item, in order; `subs` must not be empty.
    /// @return firstIndex the round index of `subs[0]`; the others follow consecutively.
    function submitUpdatesFor(uint256 taskId, uint32 round, SignedSubmission[] calldata subs)
        external
        returns (uint16 firstIndex);

    // ─── Scores ─────────────────────────────────────────────────────────────────────────────────────────────

    /// @notice Bind the caller's scores of `round` with `commitment` = {scoreCommitment}(…, salt).
    /// @dev Requirements: not paused; the caller is in the round's validator set; the commit phase is on
    /// (submissions closed, commit window not over, not every member committed yet); the caller has not
    /// committed. Emits {ScoresCommitted}; the commit phase ends at once when every set member has committed.
    function commitScores(uint256 taskId, uint32 round, bytes32 commitment) external;

    /// @notice Reveal the scores the caller committed to.
    /// @param scores one big-endian two's-complement int16 per update of the round, in index order, each in
    /// [-10_000, 10_000].
    /// @param reasons one reason code per update: 0, or nonzero for a hard reject (score -10_000 then).
    /// @param salt the secret salt of the commitment.
    /// @dev Requirements: not paused; the reveal phase is on (commit phase over, reveal window not over); the
    /// caller committed and has not revealed; the lengths and values are valid; the hash matches the commitment.
    /// Emits {ScoresRevealed}.
    function revealScores(uint256 taskId, uint32 round, bytes calldata scores, bytes calldata reasons, bytes32 salt)
        external;

    // ─── Finalization and rewards ───────────────────────────────────────────────────────────────────────────

    /// @notice End the round with `aggregateDigest`, the aggregate of the updates the consensus accepted; settle
    /// reputations, accrue rewards and open the next round on the aggregate with a freshly frozen validator set.
    /// @dev Requirements: not paused; caller is an aggregator; `round` is the live round; the round is
    /// finalizable; the aggregate is the base when nothing was accepted, else nonzero. The accepted set and every
    /// settlement are computed here from the revealed scores. Emits {RoundFinalized} and {RoundOpened}.
    function finalizeRound(uint256 taskId, uint32 round, bytes32 aggregateDigest) external;

    /// @notice End a round the aggregator left unfinalized past its grace: the base carries over as the round's
    /// aggregate, reputations settle as usual, no reward accrues, and the next round opens. Anyone may call;
    /// it can happen once per round (the round advances).
    /// @dev Requirements: not paused; `round` is the live round; ledger time ≥ graceEnd.
    /// Emits {RoundFinalized} (carriedOver = true) and {RoundOpened}.
    function finalizeCarryOver(uint256 taskId, uint32 round) external;

    /// @notice Mint the caller's accrued rewards to it.
    /// @dev Reverts with {MeshLedger_NothingToClaim} when nothing accrued. Emits {RewardsClaimed}.
    /// @return amount the tokens minted.
    function claimRewards() external returns (uint256 amount);

    // ─── Views ──────────────────────────────────────────────────────────────────────────────────────────────

    /// @notice The reward token (the ledger is its only minter).
    function token() external view returns (address);

    /// @notice Number of tasks created; task ids run from 1 to this.
    function taskCount() external view returns (uint256);

    /// @notice A task's parameters and its live round number.
    function task(uint256 taskId) external view returns (TaskParams memory params, uint32 currentRound);

    /// @notice The live round number of `taskId`.
    function currentRound(uint256 taskId) external view returns (uint32);

    /// @notice A round's phase, base, aggregate and (while live) timing and counts, in ledger time.
    function roundView(uint256 taskId, uint32 round) external view returns (RoundView memory);

    /// @notice The model a round trains on: the genesis model for round 1, else the previous round's aggregate.
    function baseDigest(uint256 taskId, uint32 round) external view returns (bytes32);

    /// @notice A finalized round's aggregate digest (zero while the round is live).
    function aggregateDigest(uint256 taskId, uint32 round) external view returns (bytes32);

    /// @notice Update `index` of the live round: who submitted it and on how many samples.
    function submission(uint256 taskId, uint32 round, uint16 index)
        external
        view
        returns (address contributor, uint64 numSamples);

    /// @notice Whether `contributor` submitted to the live round, and if so its index and sample count.
    function submissionOf(uint256 taskId, uint32 round, address contributor)
        external
        view
        returns (bool submitted, uint16 index, uint64 numSamples);

    /// @notice The live round's validator set (frozen at round open) with its weights, and who has committed
    /// and revealed so far (bit k = member k of the set).
    function validatorSet(uint256 taskId, uint32 round)
        external
        view
        returns (address[] memory members, uint16[] memory weights, uint256 committedMask, uint256 revealedMask);

    /// @notice `validator`'s revealed scores in the live round (`revealed` false and no scores before it reveals).
    function revealedScores(uint256 taskId, uint32 round, address validator)
        external
        view
        returns (bool revealed, int16[] memory scores);

    /// @notice The consensus of each update from the reveals so far (unrevealed members count as 0) and the
    /// updates it accepts (consensus > 0 and revealCount ≥ quorum) — the outcome finalization will record once
    /// the reveal phase is over.
    function tally(uint256 taskId, uint32 round) external view returns (int16[] memory consensus, uint256 acceptedBitmap);

    /// @notice The commitment {commitScores} expects: keccak256(abi.encode(block.chainid, address(this), taskId,
    /// round, validator, keccak256(scores), keccak256(reasons), salt)).
    function scoreCommitment(
        uint256 taskId,
        uint32 round,
        address validator,
        bytes calldata scores,
        bytes calldata reasons,
        bytes32 salt
    ) external view returns (bytes32);

    /// @notice Everything kept about `account`: nonce, both reputations, seat number, roles, accrued rewards.
    function account(address account_) external view returns (AccountView memory);

    /// @notice `account`'s reputations as a contributor and as a validator (0 = never held the role).
    function reputation(address account_) external view returns (uint32 contributor, uint32 validator);

    /// @notice The nonce `account`'s next signed submission must carry.
    function nonces(address account_) external view returns (uint64);

    /// @notice Number of accounts holding the contributor role.
    function contributorCount() external view returns (uint256);

    /// @notice The accounts holding the validator role now (the set frozen by the next round that opens).
    function validators() external view returns (address[] memory);

    /// @notice The EIP-712 digest a contributor signs for a relayed submission.
    function hashSubmission(
        uint256 taskId,
        uint32 round,
        bytes32 digest,
        uint64 numSamples,
        uint64 nonce,
        uint64 deadline
    ) external view returns (bytes32);

    /// @notice The ledger clock: `ledgerNow` = wall time minus the time spent paused; `pausedAt` the wall time
    /// the current pause began (0 when not paused, a lapsed pause included); `pausedTotal` the seconds of every
    /// ended pause (a lapsed pause counts MAX_PAUSE).
    function clock() external view returns (uint64 ledgerNow, uint64 pausedAt, uint64 pausedTotal);

    /// @notice Seconds (wall time) between scheduling a role change and its earliest execution.
    function roleDelay() external view returns (uint64);

    /// @notice When the scheduled role change becomes executable (wall time), 0 when none is pending.
    function pendingRoleChange(bytes32 role, address account, bool grant) external view returns (uint64 executeAfter);
}
