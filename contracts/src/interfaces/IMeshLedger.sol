// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

/// @title IMeshLedger
/// @notice The provenance ledger of a consortium training run: which contributor submitted which model update
/// (by content digest), how every validator voted on it, which updates each round's aggregate used, and the
/// reputation and token rewards that followed. Errors, events and types live here so that clients, the event
/// index and auditors can decode everything from this one file. docs/contracts.md describes the model.
/// @dev Digests are the 32-byte sha-256 inside a CIDv0 (`0x1220 || digest`), never a CID string.
interface IMeshLedger {
    // ─── Types ──────────────────────────────────────────────────────────────────────────────────────────────

    /// @notice Where a round stands. Rounds only move forward: Open → Voting → Closed → Finalized.
    /// @dev None: the round does not exist (yet). Open: submissions accepted (votes too, on updates already in).
    /// Voting: submissions closed (window over, or every contributor submitted), votes accepted.
    /// Closed: the vote window is over, waiting for the aggregator. Finalized: the aggregate is recorded.
    enum Phase {
        None,
        Open,
        Voting,
        Closed,
        Finalized
    }

    /// @notice Which of an account's two reputations (and reward kinds) an event is about.
    enum Role {
        Contributor,
        Validator
    }

    /// @notice A task's configuration, fixed at creation.
    /// @param specDigest sha-256 digest of the task specification file (model, data, checks), as in a CIDv0.
    /// @param genesisDigest digest of the initial model: the base of round 1.
    /// @param rule aggregation rule: 0 fedavg, 1 trimmed mean, 2 coordinate-wise median, 3 multi-krum.
    /// @param ruleParam packed rule parameters: bits 0-15 the rule's argument (trimmed mean: fraction trimmed
    /// from each side in basis points, 1..4999; multi-krum: f, the number of faulty updates tolerated;
    /// fedavg and median: 0); bits 16-31 the L2 norm clip applied to each update first, in thousandths
    /// (0 = no clipping).
    /// @param quorum accepting validator votes needed for an update to be accepted (at least 1).
    /// @param submissionWindow seconds a round accepts submissions after it opens.
    /// @param voteWindow seconds votes are accepted after submissions close.
    /// @param rewardPerRound tokens (base units) minted at most per finalized round.
    struct TaskParams {
        bytes32 specDigest;
        bytes32 genesisDigest;
        uint8 rule;
        uint32 ruleParam;
        uint16 quorum;
        uint32 submissionWindow;
        uint32 voteWindow;
        uint128 rewardPerRound;
    }

    /// @notice A round as clients see it.
    /// @dev For a finalized round only `phase`, `baseDigest` and `aggregateDigest` are kept on chain (the
    /// other fields are zero): its submissions, votes and settlement live in the logs.
    /// @param submissionEnd when submissions closed or will close (early when every contributor submitted).
    /// @param voteEnd when votes close; the aggregator may finalize from then on, or earlier once submissions
    /// are closed and every validator has voted on every update (`finalizable`).
    struct RoundView {
        Phase phase;
        bytes32 baseDigest;
        bytes32 aggregateDigest;
        uint64 openedAt;
        uint64 submissionEnd;
        uint64 voteEnd;
        uint16 submissionCount;
        bool finalizable;
    }

    /// @notice A submission relayed for `contributor`, with its EIP-712 signature over
    /// `Submission(uint256 taskId,uint32 round,bytes32 digest,uint64 numSamples,uint64 nonce,uint64 deadline)`
    /// in the domain `MeshLedger`, version `1`, this chain id and this contract.
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

    /// @notice What finalization did for one participant of the round: its new `role` reputation and the
    /// reward minted to it (0 when it earned none).
    struct Settlement {
        address account;
        Role role;
        uint32 reputation;
        uint256 reward;
    }

    /// @notice Everything the ledger keeps about one address.
    /// @param memberNumber the member's permanent seat number (0 = never a contributor or validator).
    struct AccountView {
        uint64 nonce;
        uint32 contributorReputation;
        uint32 validatorReputation;
        uint16 memberNumber;
        bool contributor;
        bool validator;
        bool aggregator;
    }

    // ─── Errors ─────────────────────────────────────────────────────────────────────────────────────────────

    /// @notice The token address given to the constructor is zero.
    error MeshLedger_ZeroToken();

    /// @notice The admin address given to the constructor is zero.
    error MeshLedger_ZeroAdmin();

    /// @notice `account` does not hold the contributor role.
    error MeshLedger_NotContributor(address account);

    /// @notice `account` does not hold the validator role.
    error MeshLedger_NotValidator(address account);

    /// @notice `account` does not hold the aggregator role.
    error MeshLedger_NotAggregator(address account);

    /// @notice `account` holds `heldRole`, which excludes `requestedRole` (a contributor may not validate).
    error MeshLedger_RoleConflict(address account, bytes32 heldRole, bytes32 requestedRole);

    /// @notice Granting the validator role would exceed `max` validators (finalization visits each one).
    error MeshLedger_TooManyValidators(uint256 max);

    /// @notice Every member seat number (up to `max`) is taken.
    error MeshLedger_TooManyMembers(uint256 max);

    /// @notice No task has id `taskId`.
    error MeshLedger_UnknownTask(uint256 taskId);

    /// @notice `digest` is not an acceptable content digest (the zero digest names no content).
    error MeshLedger_InvalidDigest(bytes32 digest);

    /// @notice `rule` is not a known aggregation rule or `ruleParam` does not fit it.
    error MeshLedger_InvalidRule(uint8 rule, uint32 ruleParam);

    /// @notice A quorum of `quorum` accepting votes cannot be used (it must be at least 1).
    error MeshLedger_InvalidQuorum(uint16 quorum);

    /// @notice Both windows must be at least one second.
    error MeshLedger_InvalidWindows(uint32 submissionWindow, uint32 voteWindow);

    /// @notice The call names `round` but task `taskId` is in round `currentRound`.
    error MeshLedger_WrongRound(uint256 taskId, uint32 currentRound, uint32 round);

    /// @notice Per-round detail of `round` is only kept while it is the live round (`currentRound`); read the
    /// logs for earlier rounds.
    error MeshLedger_RoundNotLive(uint256 taskId, uint32 round, uint32 currentRound);

    /// @notice Task `taskId` has no round `round` (yet).
    error MeshLedger_UnknownRound(uint256 taskId, uint32 round);

    /// @notice Submissions to the round closed at `submissionEnd`.
    error MeshLedger_SubmissionsClosed(uint256 taskId, uint32 round, uint64 submissionEnd);

    /// @notice `contributor` already submitted an update to this round.
    error MeshLedger_AlreadySubmitted(uint256 taskId, uint32 round, address contributor);

    /// @notice An update must be trained on at least one sample.
    error MeshLedger_InvalidSamples(address contributor, uint64 numSamples);

    /// @notice A batch must hold at least one item.
    error MeshLedger_EmptyBatch();

    /// @notice The signature of `contributor` expired at `deadline` (now is `timestamp`).
    error MeshLedger_SignatureExpired(address contributor, uint64 deadline, uint256 timestamp);

    /// @notice The signed nonce `given` is not `contributor`'s next nonce `expected`.
    error MeshLedger_InvalidNonce(address contributor, uint64 expected, uint64 given);

    /// @notice The signature recovers to `recovered`, not `contributor` (wrong key, wrong chain or altered data).
    error MeshLedger_InvalidSignature(address contributor, address recovered);

    /// @notice Votes on the round closed at `voteEnd`.
    error MeshLedger_VotingClosed(uint256 taskId, uint32 round, uint64 voteEnd);

    /// @notice The bitmap `indexes` is empty or names updates at or beyond `submissionCount`.
    error MeshLedger_UnknownUpdates(uint256 taskId, uint32 round, uint256 indexes, uint16 submissionCount);

    /// @notice `validator` already voted on the updates in the bitmap `indexes`.
    error MeshLedger_AlreadyVoted(uint256 taskId, uint32 round, address validator, uint256 indexes);

    /// @notice The accept bitmap `accepts` has bits outside the bitmap of voted updates `indexes`.
    error MeshLedger_InvalidBallot(uint256 indexes, uint256 accepts);

    /// @notice A ballot needs one reason code per voted update: `expected`, not `given`.
    error MeshLedger_ReasonCount(uint256 expected, uint256 given);

    /// @notice The reason code must be 0 (accepted) for an accept and nonzero for a reject.
    error MeshLedger_InvalidReason(uint16 index, bool accept, uint8 reason);

    /// @notice The round cannot be finalized before `voteEnd` unless submissions are closed and every validator
    /// voted on every update.
    error MeshLedger_FinalizeTooEarly(uint256 taskId, uint32 round, uint64 voteEnd);

    /// @notice The accepted set `given` differs from the quorum outcome `expected` of the recorded votes.
    error MeshLedger_AcceptedSetMismatch(uint256 taskId, uint32 round, uint256 expected, uint256 given);

    /// @notice With no update accepted the model carries over: the aggregate must be the base `baseDigest`.
    error MeshLedger_AggregateMustBeBase(bytes32 baseDigest, bytes32 aggregateDigest);

    // ─── Events ─────────────────────────────────────────────────────────────────────────────────────────────

    /// @notice `admin` created task `taskId` with `params` (round 1 opens in the same transaction).
    event TaskCreated(uint256 indexed taskId, address indexed admin, TaskParams params);

    /// @notice Round `round` of `taskId` opened at `openedAt` on base model `baseDigest`; `by` is the admin
    /// (round 1) or the aggregator that finalized the previous round.
    event RoundOpened(
        uint256 indexed taskId, uint32 indexed round, address indexed by, bytes32 baseDigest, uint64 openedAt
    );

    /// @notice `contributor` submitted update number `index` of the round: content `digest`, trained on
    /// `numSamples` samples. `relayer` sent the transaction (the contributor itself when not relayed).
    event UpdateSubmitted(
        uint256 indexed taskId,
        uint32 indexed round,
        address indexed contributor,
        uint16 index,
        bytes32 digest,
        uint64 numSamples,
        address relayer
    );

    /// @notice Submissions closed early at `closedAt`: `lastContributor`'s was the last one the round waited for.
    event SubmissionsClosed(
        uint256 indexed taskId,
        uint32 indexed round,
        address indexed lastContributor,
        uint16 submissionCount,
        uint64 closedAt
    );

    /// @notice `validator` voted on the updates whose bits are set in `indexes`: accept where the bit is set in
    /// `accepts`, reject elsewhere; `reasons` holds one reason code (ledger/reasons.py) per voted update, in
    /// ascending index order (0 for accepts).
    event VotesCast(
        uint256 indexed taskId,
        uint32 indexed round,
        address indexed validator,
        uint256 indexes,
        uint256 accepts,
        bytes reasons
    );

    /// @notice A role grant gave `account` its starting `role` reputation `reputation` (only the first grant of a
    /// role does: revoking and re-granting keeps the reputation earned).
    event ReputationInitialized(address indexed account, Role role, uint32 reputation);

    /// @notice `aggregator` finalized the round: `aggregateDigest` is the aggregate, by rule `rule` with
    /// `ruleParam`, of the updates whose bits are set in `acceptedBitmap`. `settlements` lists, in this order,
    /// every contributor with an update in the round (in update-index order) and every validator that voted in
    /// it (in validator-list order), each with its new reputation and its reward; the rewards add up to the
    /// tokens minted (the budget minus rounding dust and the shares nobody earned).
    /// @dev One event per round instead of one per participant: a log costs 375 gas plus 375 per topic, which
    /// for 16 contributors and 3 validators is ~30,000 gas; rewards remain queryable per account through the
    /// token's Transfer events.
    event RoundFinalized(
        uint256 indexed taskId,
        uint32 indexed round,
        address indexed aggregator,
        bytes32 aggregateDigest,
        uint256 acceptedBitmap,
        uint8 rule,
        uint32 ruleParam,
        Settlement[] settlements
    );

    // ─── Administration ─────────────────────────────────────────────────────────────────────────────────────

    /// @notice Create a task and open its round 1 on the genesis model.
    /// @dev Requirements: caller has the admin role; digests nonzero; rule known and `ruleParam` fits it;
    /// quorum ≥ 1; both windows ≥ 1 s. Emits {TaskCreated} and {RoundOpened}.
    /// @return taskId the new task's id (ids start at 1).
    function createTask(TaskParams calldata params) external returns (uint256 taskId);

    /// @notice Stop every submission, vote and finalization (an emergency brake). Windows keep running.
    /// @dev Requirement: caller has the admin role. Emits {Pausable-Paused}.
    function pause() external;

    /// @notice Undo {pause}.
    /// @dev Requirement: caller has the admin role. Emits {Pausable-Unpaused}.
    function unpause() external;

    // ─── Submissions ────────────────────────────────────────────────────────────────────────────────────────

    /// @notice Record the caller's update `digest`, trained on `numSamples` samples, in `round` of `taskId`.
    /// @dev Requirements: not paused; caller is a contributor; `round` is the task's open round; the caller has
    /// not submitted to it; digest nonzero; numSamples ≥ 1. Emits {UpdateSubmitted}, and {SubmissionsClosed}
    /// when this was the last contributor to submit or filled the round (MAX_UPDATES_PER_ROUND updates).
    /// @return index the update's number within the round (0-based), used by votes and the accepted set.
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

    // ─── Votes ──────────────────────────────────────────────────────────────────────────────────────────────

    /// @notice Vote on update `index` of `round`: accept, or reject with a reason code.
    /// @dev Requirements: not paused; caller is a validator; `round` is the live round and its vote window has
    /// not ended; the update exists; the caller has not voted on it; `reason` is 0 iff `accept`.
    /// Emits {VotesCast}.
    function vote(uint256 taskId, uint32 round, uint16 index, bool accept, uint8 reason) external;

    /// @notice Cast many verdicts at once (typically all of one validator's verdicts on a round).
    /// @param indexes bitmap of the updates voted on (bit i = update i).
    /// @param accepts bitmap of the accepted ones (a subset of `indexes`).
    /// @param reasons one reason code per set bit of `indexes`, in ascending index order.
    /// @dev As {vote} for every update in `indexes`. Emits one {VotesCast}.
    function voteBatch(uint256 taskId, uint32 round, uint256 indexes, uint256 accepts, bytes calldata reasons) external;

    // ─── Finalization ───────────────────────────────────────────────────────────────────────────────────────

    /// @notice Record `aggregateDigest` as the aggregate of the accepted updates, settle reputation and rewards,
    /// and open the next round on the aggregate.
    /// @param acceptedBitmap bit i set iff update i is accepted; must equal the quorum outcome of the votes
    /// (accept votes of the current validators ≥ quorum).
    /// @dev Requirements: not paused; caller is an aggregator; `round` is the live round; the vote window has
    /// ended, or submissions are closed and every validator voted on every update; the accepted set matches;
    /// the aggregate is the base when nothing was accepted, else nonzero.
    /// Emits {RoundFinalized} (with every settlement) and {RoundOpened}.
    function finalizeRound(uint256 taskId, uint32 round, bytes32 aggregateDigest, uint256 acceptedBitmap) external;

    // ─── Views ──────────────────────────────────────────────────────────────────────────────────────────────

    /// @notice The reward token (the ledger is its only minter).
    function token() external view returns (address);

    /// @notice Number of tasks created; task ids run from 1 to this.
    function taskCount() external view returns (uint256);

    /// @notice A task's parameters and its live round number.
    function task(uint256 taskId) external view returns (TaskParams memory params, uint32 currentRound);

    /// @notice The live round number of `taskId`.
    function currentRound(uint256 taskId) external view returns (uint32);

    /// @notice A round's phase, base, aggregate and (while live) timing and counts.
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

    /// @notice `validator`'s verdicts so far on the live round, as bitmaps (voted, accepted).
    function ballot(uint256 taskId, uint32 round, address validator)
        external
        view
        returns (uint256 indexes, uint256 accepts);

    /// @notice The quorum outcome of the votes recorded so far in the live round: the accepted set the aggregator
    /// must pass, and each update's accept votes from current validators.
    function tally(uint256 taskId, uint32 round)
        external
        view
        returns (uint256 acceptedBitmap, uint16[] memory acceptVotes);

    /// @notice Everything kept about `account`: nonce, both reputations, seat number and roles.
    function account(address account_) external view returns (AccountView memory);

    /// @notice `account`'s reputations as a contributor and as a validator (0 = never held the role).
    function reputation(address account_) external view returns (uint32 contributor, uint32 validator);

    /// @notice The nonce `account`'s next signed submission must carry.
    function nonces(address account_) external view returns (uint64);

    /// @notice Number of accounts holding the contributor role.
    function contributorCount() external view returns (uint256);

    /// @notice The accounts holding the validator role (the voters counted at finalization).
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
}
