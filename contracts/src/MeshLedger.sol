// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";

import {IMeshLedger} from "./interfaces/IMeshLedger.sol";
import {IMeshToken} from "./interfaces/IMeshToken.sol";
import {Bits} from "./libraries/Bits.sol";
import {Consensus} from "./libraries/Consensus.sol";
import {Account, Config, Entry, Globals, LedgerStore, Live, Position, Times} from "./libraries/LedgerStore.sol";
import {RoundSettlement} from "./RoundSettlement.sol";

/// @title MeshLedger (protocol v2)
/// @notice The provenance ledger of consortium training runs. See {IMeshLedger}, docs/protocol.md (the rules and
/// why) and docs/contracts.md (this contract).
/// @dev Storage keeps what the contract enforces: the live round of each task (its submissions, its frozen
/// validator set, each member's commitment and then its revealed scores), the lineage (each round's aggregate),
/// and each account's reputations, nonce and accrued rewards. Everything else — the digest of every update,
/// every reason code, every settlement — is in the logs.
/// Gas: per-round slots are keyed by task (and tagged with the round where needed), so a later round overwrites
/// them (a nonzero-to-nonzero store) instead of filling a fresh slot each round; reputations are packed four
/// seats (both roles) to a slot; rewards accrue in the account's own slot (already nonzero for every member), so a
/// task's first finalization costs what every finalization costs; a member's commitment slot is reused for its
/// first word of scores at reveal.
contract MeshLedger is IMeshLedger, AccessControl, EIP712 {
    using Bits for uint256;

    // ─── Constants ──────────────────────────────────────────────────────────────────────────────────────────

    /// @notice Role of the members that train and submit updates.
    bytes32 public constant CONTRIBUTOR_ROLE = keccak256("CONTRIBUTOR_ROLE");
    /// @notice Role of the members that score updates (a round's validator set is frozen from it at round open).
    bytes32 public constant VALIDATOR_ROLE = keccak256("VALIDATOR_ROLE");
    /// @notice Role of the members that aggregate the accepted updates and finalize rounds.
    bytes32 public constant AGGREGATOR_ROLE = keccak256("AGGREGATOR_ROLE");

    /// @notice EIP-712 type of a relayed submission.
    bytes32 public constant SUBMISSION_TYPEHASH = keccak256(
        "Submission(uint256 taskId,uint32 round,bytes32 digest,uint64 numSamples,uint64 nonce,uint64 deadline)"
    );

    uint8 public constant RULE_FEDAVG = 0;
    uint8 public constant RULE_TRIMMED_MEAN = 1;
    uint8 public constant RULE_MEDIAN = 2;
    uint8 public constant RULE_MULTI_KRUM = 3;

    /// @notice Fixed point of a score: 10_000 = 1.0; scores are int16 in [-SCORE_ONE, SCORE_ONE].
    int16 public constant SCORE_ONE = 10_000;
    /// @notice Updates one round can hold (seven words of scores per validator).
    uint256 public constant MAX_UPDATES_PER_ROUND = 112;
    /// @notice Validators at once (a round's set; the commit and reveal masks are 32-bit).
    uint256 public constant MAX_VALIDATORS = 32;
    /// @notice Member seats ever assigned. A contributor or validator gets a seat at its first grant and keeps
    /// it for good, so a revoked and re-granted contributor cannot submit twice in a round.
    uint256 public constant MAX_SEATS = type(uint16).max;

    /// @notice Reputation bounds and starting value, for both the contributor and the validator reputation.
    uint32 public constant REPUTATION_MIN = 100;
    uint32 public constant REPUTATION_MAX = 10_000;
    uint32 public constant REPUTATION_START = 5_000;
    /// @notice Contributor reputation change for consensus c: +GAIN·c/SCORE_ONE (c > 0), -LOSS·|c|/SCORE_ONE (c < 0).
    uint32 public constant CONTRIBUTOR_GAIN = 500;
    uint32 public constant CONTRIBUTOR_LOSS = 1_500;
    /// @notice Validator reputation change: +GAIN when its distance d is within the round's tolerance r, else
    /// -min(LOSS, LOSS·(d - r)/r); -ABSENT_LOSS when it did not reveal; below the quorum only absence costs.
    uint32 public constant VALIDATOR_GAIN = 200;
    uint32 public constant VALIDATOR_LOSS = 1_000;
    uint32 public constant ABSENT_LOSS = 500;
    /// @notice The round's tolerance is DISTANCE_TOLERANCE × max(DISTANCE_FLOOR, m), m the weighted median of the
    /// revealed validators' mean distances to the consensus; agreement A = max(0, 1 - d / tolerance).
    uint256 public constant DISTANCE_FLOOR = 200;
    uint256 public constant DISTANCE_TOLERANCE = 3;
    /// @notice Share of each round's budget for the validators, in basis points; the rest goes to contributors.
    uint256 public constant VALIDATOR_SHARE_BPS = 1_000;
    /// @notice The longest a pause lasts (it lapses by itself), and the least time between two pauses.
    uint64 public constant MAX_PAUSE = 3 days;
    /// @notice The largest `maxSamples` a task may allow.
    uint64 public constant MAX_SAMPLES_CAP = 2 ** 32;
    /// @notice `rewardPerRound` must be below this.
    uint128 public constant REWARD_CAP = 2 ** 96;

    uint8 private constant FLAG_CONTRIBUTOR = 1;
    uint8 private constant FLAG_VALIDATOR = 2;
    uint8 private constant FLAG_AGGREGATOR = 4;
    /// Seat words: bits 0-31 hold the round the word belongs to, bits 32-255 one bit per contributor seat.
    uint256 private constant SEATS_PER_WORD = 224;
    uint256 private constant SEAT_BITS_OFFSET = 32;
    /// Score words of set member k live at keys k·8 + w (w < 7); word 0 holds the commitment until the reveal.
    uint256 private constant WORDS_PER_MEMBER_LOG2 = 3;

    // ─── Storage ────────────────────────────────────────────────────────────────────────────────────────────

    IMeshToken private immutable _token;
    uint64 private immutable _roleDelay;

    LedgerStore private _s;

    // ─── Construction ───────────────────────────────────────────────────────────────────────────────────────

    /// @param admin receives the admin role (grants roles, creates tasks, pauses).
    /// @param token_ the reward token; its deployer must then call `setMinter(<this ledger>)`.
    /// @param roleDelay_ seconds between scheduling a role change and its earliest execution, once a task exists.
    constructor(address admin, IMeshToken token_, uint64 roleDelay_) EIP712("MeshLedger", "2") {
        if (address(token_) == address(0)) revert MeshLedger_ZeroToken();
        if (admin == address(0)) revert MeshLedger_ZeroAdmin();
        _token = token_;
        _roleDelay = roleDelay_;
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
    }

    // ─── Administration ─────────────────────────────────────────────────────────────────────────────────────

    /// @inheritdoc IMeshLedger
    function createTask(TaskParams calldata p) external onlyRole(DEFAULT_ADMIN_ROLE) returns (uint256 taskId) {
        if (p.specDigest == bytes32(0)) revert MeshLedger_InvalidDigest(p.specDigest);
        if (p.genesisDigest == bytes32(0)) revert MeshLedger_InvalidDigest(p.genesisDigest);
        if (!_ruleFits(p.rule, p.ruleParam)) revert MeshLedger_InvalidRule(p.rule, p.ruleParam);
        if (p.quorum == 0) revert MeshLedger_InvalidQuorum(p.quorum);
        if (p.quorum > _s.validatorList.length) revert MeshLedger_QuorumAboveValidators(p.quorum, _s.validatorList.length);
        if (p.submissionWindow == 0 || p.commitWindow == 0 || p.revealWindow == 0 || p.finalizeGrace == 0) {
            revert MeshLedger_InvalidWindows(p.submissionWindow, p.commitWindow, p.revealWindow, p.finalizeGrace);
        }
        if (p.maxSamples == 0 || p.maxSamples > MAX_SAMPLES_CAP) {
            revert MeshLedger_InvalidMaxSamples(p.maxSamples, MAX_SAMPLES_CAP);
        }
        if (p.rewardPerRound >= REWARD_CAP) revert MeshLedger_InvalidReward(p.rewardPerRound, REWARD_CAP);
        Globals memory g = _s.globals;
        taskId = ++g.taskCount;
        _s.globals = g;
        _s.configs[taskId] = Config({
            submissionWindow: p.submissionWindow,
            commitWindow: p.commitWindow,
            revealWindow: p.revealWindow,
            finalizeGrace: p.finalizeGrace,
            maxSamples: p.maxSamples,
            ruleParam: p.ruleParam,
            quorum: p.quorum,
            rule: p.rule,
            rewardPerRound: p.rewardPerRound,
            listVersion: g.listVersion,
            specDigest: p.specDigest,
            genesisDigest: p.genesisDigest
        });
        // Tag seat word 0 with round 1 now, so that even the task's first submission updates a nonzero slot.
        _s.seatWords[taskId][0] = 1;
        emit TaskCreated(taskId, msg.sender, p);
        uint64 t = _ledgerNow(g);
        uint8 count = RoundSettlement.openRound(_s, taskId, 1, p.genesisDigest, t, 0, 0);
        // Fill the set's commitment slots now, so that even the task's first commitments overwrite nonzero slots.
        for (uint256 k; k < count; ++k) {
            _s.scoreWords[taskId][k << WORDS_PER_MEMBER_LOG2] = 1;
        }
    }

    /// @inheritdoc IMeshLedger
    function pause() external onlyRole(DEFAULT_ADMIN_ROLE) {
        Globals memory g = _s.globals;
        if (_pausedNow(g)) revert MeshLedger_Paused(uint64(g.pausedAt) + MAX_PAUSE);
        _foldLapsedPause(g);
        if (g.lastPauseEnd != 0 && block.timestamp < uint256(g.lastPauseEnd) + MAX_PAUSE) {
            revert MeshLedger_PauseCooldown(uint64(g.lastPauseEnd) + MAX_PAUSE, block.timestamp);
        }
        g.pausedAt = uint40(block.timestamp);
        _s.globals = g;
        emit Paused(msg.sender);
    }

    /// @inheritdoc IMeshLedger
    function unpause() external onlyRole(DEFAULT_ADMIN_ROLE) {
        Globals memory g = _s.globals;
        if (!_pausedNow(g)) revert MeshLedger_NotPaused();
        // unchecked: pausedAt ≤ block.timestamp, and the sum of all pauses stays below the wall time.
        unchecked {
            g.pausedTotal += uint40(block.timestamp - g.pausedAt);
        }
        g.lastPauseEnd = uint40(block.timestamp);
        g.pausedAt = 0;
        _s.globals = g;
        emit Unpaused(msg.sender);
    }

    /// @inheritdoc IMeshLedger
    function paused() external view returns (bool) {
        return _pausedNow(_s.globals);
    }

    /// @inheritdoc IMeshLedger
    function scheduleRoleChange(bytes32 role, address account_, bool grant)
        external
        onlyRole(getRoleAdmin(role))
        returns (uint64 executeAfter)
    {
        bytes32 key = _changeKey(role, account_, grant);
        uint64 pending = _s.pendingChanges[key];
        if (pending != 0) revert MeshLedger_RoleChangePending(role, account_, grant, pending);
        executeAfter = uint64(block.timestamp) + _roleDelay;
        // A zero roleDelay would store 0 (= none) for a change made at time 0; block times are never 0.
        _s.pendingChanges[key] = executeAfter;
        emit RoleChangeScheduled(role, account_, grant, executeAfter);
    }

    /// @inheritdoc IMeshLedger
    function executeRoleChange(bytes32 role, address account_, bool grant) external {
        bytes32 key = _changeKey(role, account_, grant);
        uint64 executeAfter = _s.pendingChanges[key];
        if (executeAfter == 0) revert MeshLedger_RoleChangeNotScheduled(role, account_, grant);
        if (block.timestamp < executeAfter) {
            revert MeshLedger_RoleChangeNotReady(role, account_, grant, executeAfter, block.timestamp);
        }
        delete _s.pendingChanges[key];
        if (grant) {
            _grantRole(role, account_);
        } else {
            _revokeRole(role, account_);
        }
    }

    /// @inheritdoc IMeshLedger
    function cancelRoleChange(bytes32 role, address account_, bool grant) external onlyRole(getRoleAdmin(role)) {
        bytes32 key = _changeKey(role, account_, grant);
        if (_s.pendingChanges[key] == 0) revert MeshLedger_RoleChangeNotScheduled(role, account_, grant);
        delete _s.pendingChanges[key];
        emit RoleChangeCancelled(role, account_, grant);
    }

    /// @notice Immediate grant, only while no task exists (setting up the consortium); afterwards
    /// {scheduleRoleChange}.
    function grantRole(bytes32 role, address account_) public override {
        if (_s.globals.taskCount != 0) revert MeshLedger_RoleChangeDelayed(role, account_);
        super.grantRole(role, account_);
    }

    /// @notice Immediate revocation, only while no task exists; afterwards {scheduleRoleChange}. Renouncing one's
    /// own role ({renounceRole}) stays immediate.
    function revokeRole(bytes32 role, address account_) public override {
        if (_s.globals.taskCount != 0) revert MeshLedger_RoleChangeDelayed(role, account_);
        super.revokeRole(role, account_);
    }

    // ─── Submissions ────────────────────────────────────────────────────────────────────────────────────────

    /// @inheritdoc IMeshLedger
    function submitUpdate(uint256 taskId, uint32 round, bytes32 digest, uint64 numSamples)
        external
        returns (uint16 index)
    {
        Account memory a = _s.accounts[msg.sender];
        if (a.flags & FLAG_CONTRIBUTOR == 0) revert MeshLedger_NotContributor(msg.sender);
        (Globals memory g, Live memory live, uint64 t, uint64 maxSamples) = _submissionRound(taskId, round);
        index = _record(taskId, live, msg.sender, a.seat, digest, numSamples, maxSamples);
        _closeIfComplete(taskId, live, g.contributorCount, msg.sender, t);
        _s.live[taskId] = live;
    }

    /// @inheritdoc IMeshLedger
    function submitUpdateFor(uint256 taskId, uint32 round, SignedSubmission calldata sub)
        external
        returns (uint16 index)
    {
        (Globals memory g, Live memory live, uint64 t, uint64 maxSamples) = _submissionRound(taskId, round);
        index = _recordSigned(taskId, live, sub, maxSamples);
        _closeIfComplete(taskId, live, g.contributorCount, sub.contributor, t);
        _s.live[taskId] = live;
    }

    /// @inheritdoc IMeshLedger
    function submitUpdatesFor(uint256 taskId, uint32 round, SignedSubmission[] calldata subs)
        external
        returns (uint16 firstIndex)
    {
        if (subs.length == 0) revert MeshLedger_EmptyBatch();
        (Globals memory g, Live memory live, uint64 t, uint64 maxSamples) = _submissionRound(taskId, round);
        firstIndex = live.submissionCount;
        for (uint256 i; i < subs.length; ++i) {
            // The same rule as one call per item: once the round closed early, later items are refused.
            if (live.closedAt != 0) revert MeshLedger_SubmissionsClosed(taskId, round, live.closedAt);
            _recordSigned(taskId, live, subs[i], maxSamples);
            _closeIfComplete(taskId, live, g.contributorCount, subs[i].contributor, t);
        }
        _s.live[taskId] = live;
    }

    // ─── Scores ─────────────────────────────────────────────────────────────────────────────────────────────

    /// @inheritdoc IMeshLedger
    function commitScores(uint256 taskId, uint32 round, bytes32 commitment) external {
        (Live memory live, Times memory tm) = _liveTimes(taskId, round, true);
        if (tm.now_ < tm.submissionEnd) revert MeshLedger_CommitNotOpen(taskId, round, tm.submissionEnd);
        if (tm.now_ >= tm.commitEnd) revert MeshLedger_CommitClosed(taskId, round, tm.commitEnd);
        uint256 k = _setIndex(taskId, live, msg.sender);
        uint256 committed = uint256(live.committed);
        if ((committed >> k) & 1 != 0) revert MeshLedger_AlreadyCommitted(taskId, round, msg.sender);
        committed |= uint256(1) << k;
        Live storage stored = _s.live[taskId];
        // forge-lint: disable-next-line(unsafe-typecast) k < validatorCount ≤ 32
        stored.committed = uint32(committed);
        // The commit phase ends as soon as the whole set is bound: nothing more can come.
        if (committed == Bits.lowMask(live.validatorCount)) stored.commitClosedAt = uint40(tm.now_);
        _s.scoreWords[taskId][k << WORDS_PER_MEMBER_LOG2] = uint256(commitment);
        emit ScoresCommitted(taskId, round, msg.sender, commitment);
    }

    /// @inheritdoc IMeshLedger
    function revealScores(uint256 taskId, uint32 round, bytes calldata scores, bytes calldata reasons, bytes32 salt)
        external
    {
        (Live memory live, Times memory tm) = _liveTimes(taskId, round, true);
        if (tm.now_ < tm.commitEnd) revert MeshLedger_RevealNotOpen(taskId, round, tm.commitEnd);
        if (tm.now_ >= tm.revealEnd) revert MeshLedger_RevealClosed(taskId, round, tm.revealEnd);
        uint256 k = _revealer(taskId, live, scores.length, reasons.length);
        uint256 n = live.submissionCount;
        _checkScores(scores, reasons, n);
        _matchCommitment(taskId, round, k, scores, reasons, salt);
        _storeScores(_s.scoreWords[taskId], k << WORDS_PER_MEMBER_LOG2, scores, n);
        // forge-lint: disable-next-line(unsafe-typecast) k < validatorCount ≤ 32
        _s.live[taskId].revealed = live.revealed | uint32(1 << k);
        emit ScoresRevealed(taskId, round, msg.sender, scores, reasons);
    }

    // ─── Finalization and rewards ───────────────────────────────────────────────────────────────────────────

    /// @inheritdoc IMeshLedger
    function finalizeRound(uint256 taskId, uint32 round, bytes32 aggregateDigest_) external {
        if (_s.accounts[msg.sender].flags & FLAG_AGGREGATOR == 0) revert MeshLedger_NotAggregator(msg.sender);
        (Live memory live, Times memory tm) = _liveTimes(taskId, round, true);
        if (!_finalizable(live, tm)) revert MeshLedger_FinalizeTooEarly(taskId, round, tm.revealEnd);
        RoundSettlement.finalize(_s, taskId, live, tm.now_, aggregateDigest_, false);
    }

    /// @inheritdoc IMeshLedger
    function finalizeCarryOver(uint256 taskId, uint32 round) external {
        (Live memory live, Times memory tm) = _liveTimes(taskId, round, true);
        if (tm.now_ < tm.graceEnd) revert MeshLedger_GraceNotOver(taskId, round, tm.graceEnd, tm.now_);
        RoundSettlement.finalize(_s, taskId, live, tm.now_, _base(taskId, round), true);
    }

    /// @inheritdoc IMeshLedger
    function claimRewards() external returns (uint256 amount) {
        Account storage a = _s.accounts[msg.sender];
        amount = a.accrued;
        if (amount == 0) revert MeshLedger_NothingToClaim(msg.sender);
        a.accrued = 0;
        emit RewardsClaimed(msg.sender, amount);
        _token.mint(msg.sender, amount);
    }

    // ─── Views ──────────────────────────────────────────────────────────────────────────────────────────────

    /// @inheritdoc IMeshLedger
    function token() external view returns (address) {
        return address(_token);
    }

    /// @inheritdoc IMeshLedger
    function taskCount() external view returns (uint256) {
        return _s.globals.taskCount;
    }

    /// @inheritdoc IMeshLedger
    function task(uint256 taskId) external view returns (TaskParams memory params, uint32 currentRound_) {
        Config storage cfg = _existingConfig(taskId);
        params = TaskParams({
            specDigest: cfg.specDigest,
            genesisDigest: cfg.genesisDigest,
            rule: cfg.rule,
            ruleParam: cfg.ruleParam,
            quorum: cfg.quorum,
            submissionWindow: cfg.submissionWindow,
            commitWindow: cfg.commitWindow,
            revealWindow: cfg.revealWindow,
            finalizeGrace: cfg.finalizeGrace,
            maxSamples: cfg.maxSamples,
            rewardPerRound: cfg.rewardPerRound
        });
        currentRound_ = _s.live[taskId].round;
    }

    /// @inheritdoc IMeshLedger
    function currentRound(uint256 taskId) external view returns (uint32) {
        _existingConfig(taskId);
        return _s.live[taskId].round;
    }

    /// @inheritdoc IMeshLedger
    function roundView(uint256 taskId, uint32 round) external view returns (RoundView memory v) {
        Config storage cfg = _existingConfig(taskId);
        Live memory live = _s.live[taskId];
        if (round == 0 || round > live.round) revert MeshLedger_UnknownRound(taskId, round);
        v.baseDigest = _base(taskId, round);
        if (round < live.round) {
            v.phase = Phase.Finalized;
            v.aggregateDigest = _s.aggregates[taskId][round];
            return v;
        }
        Times memory tm = _times(cfg, live, _ledgerNow(_s.globals));
        v.openedAt = live.openedAt;
        v.submissionEnd = tm.submissionEnd;
        v.commitEnd = tm.commitEnd;
        v.revealEnd = tm.revealEnd;
        v.graceEnd = tm.graceEnd;
        v.submissionCount = live.submissionCount;
        v.validatorCount = live.validatorCount;
        // forge-lint: disable-next-line(unsafe-typecast) at most MAX_VALIDATORS = 32 bits are set
        v.commitCount = uint8(uint256(live.committed).popcount());
        // forge-lint: disable-next-line(unsafe-typecast) idem
        v.revealCount = uint8(uint256(live.revealed).popcount());
        v.finalizable = _finalizable(live, tm);
        if (tm.now_ < tm.submissionEnd) v.phase = Phase.Open;
        else if (tm.now_ < tm.commitEnd) v.phase = Phase.Commit;
        else if (!v.finalizable) v.phase = Phase.Reveal;
        else v.phase = Phase.Closed;
    }

    /// @inheritdoc IMeshLedger
    function baseDigest(uint256 taskId, uint32 round) external view returns (bytes32) {
        _existingConfig(taskId);
        if (round == 0 || round > _s.live[taskId].round) revert MeshLedger_UnknownRound(taskId, round);
        return _base(taskId, round);
    }

    /// @inheritdoc IMeshLedger
    function aggregateDigest(uint256 taskId, uint32 round) external view returns (bytes32) {
        _existingConfig(taskId);
        if (round == 0 || round > _s.live[taskId].round) revert MeshLedger_UnknownRound(taskId, round);
        return _s.aggregates[taskId][round];
    }

    /// @inheritdoc IMeshLedger
    function submission(uint256 taskId, uint32 round, uint16 index)
        external
        view
        returns (address contributor, uint64 numSamples)
    {
        Live memory live = _liveRound(taskId, round);
        if (index >= live.submissionCount) {
            revert MeshLedger_UnknownUpdate(taskId, round, index, live.submissionCount);
        }
        Entry memory e = _s.entries[taskId][index];
        return (e.contributor, e.numSamples);
    }

    /// @inheritdoc IMeshLedger
    function submissionOf(uint256 taskId, uint32 round, address contributor)
        external
        view
        returns (bool submitted, uint16 index, uint64 numSamples)
    {
        Live memory live = _liveRound(taskId, round);
        for (uint16 i; i < live.submissionCount; ++i) {
            Entry memory e = _s.entries[taskId][i];
            if (e.contributor == contributor) return (true, i, e.numSamples);
        }
        return (false, 0, 0);
    }

    /// @inheritdoc IMeshLedger
    function validatorSet(uint256 taskId, uint32 round)
        external
        view
        returns (address[] memory members, uint16[] memory weights, uint256 committedMask, uint256 revealedMask)
    {
        Live memory live = _liveRound(taskId, round);
        members = new address[](live.validatorCount);
        weights = new uint16[](live.validatorCount);
        for (uint256 k; k < members.length; ++k) {
            members[k] = _s.members[taskId][k];
            // forge-lint: disable-next-line(unsafe-typecast) a 16-bit lane of the packed weights
            weights[k] = uint16(_s.weights[taskId][k >> 4] >> ((k & 15) << 4));
        }
        return (members, weights, live.committed, live.revealed);
    }

    /// @inheritdoc IMeshLedger
    function revealedScores(uint256 taskId, uint32 round, address validator)
        external
        view
        returns (bool revealed, int16[] memory scores)
    {
        Live memory live = _liveRound(taskId, round);
        Position memory pos = _s.positions[taskId][validator];
        if (pos.epoch != live.setEpoch || (live.revealed >> pos.index) & 1 == 0) return (false, scores);
        scores = new int16[](live.submissionCount);
        uint256 base = uint256(pos.index) << WORDS_PER_MEMBER_LOG2;
        for (uint256 i; i < scores.length; ++i) {
            uint256 word = _s.scoreWords[taskId][base + (i >> 4)] ^ Consensus.FLIP;
            // forge-lint: disable-next-line(unsafe-typecast) a lane is an int16 by layout
            scores[i] = int16(Consensus.lane(word, i));
        }
        return (true, scores);
    }

    /// @inheritdoc IMeshLedger
    function tally(uint256 taskId, uint32 round)
        external
        view
        returns (int16[] memory consensus, uint256 acceptedBitmap)
    {
        Live memory live = _liveRound(taskId, round);
        return RoundSettlement.consensus(_s, taskId, live);
    }

    /// @inheritdoc IMeshLedger
    function scoreCommitment(
        uint256 taskId,
        uint32 round,
        address validator,
        bytes calldata scores,
        bytes calldata reasons,
        bytes32 salt
    ) external view returns (bytes32) {
        return _commitment(taskId, round, validator, scores, reasons, salt);
    }

    /// @inheritdoc IMeshLedger
    function account(address account_) external view returns (AccountView memory) {
        Account memory a = _s.accounts[account_];
        return AccountView({
            nonce: a.nonce,
            contributorReputation: a.contributorReputation,
            validatorReputation: a.validatorReputation,
            memberNumber: a.seat,
            contributor: a.flags & FLAG_CONTRIBUTOR != 0,
            validator: a.flags & FLAG_VALIDATOR != 0,
            aggregator: a.flags & FLAG_AGGREGATOR != 0,
            accrued: a.accrued
        });
    }

    /// @inheritdoc IMeshLedger
    function reputation(address account_) external view returns (uint32 contributor, uint32 validator) {
        Account memory a = _s.accounts[account_];
        return (a.contributorReputation, a.validatorReputation);
    }

    /// @inheritdoc IMeshLedger
    function nonces(address account_) external view returns (uint64) {
        return _s.accounts[account_].nonce;
    }

    /// @inheritdoc IMeshLedger
    function contributorCount() external view returns (uint256) {
        return _s.globals.contributorCount;
    }

    /// @inheritdoc IMeshLedger
    function validators() external view returns (address[] memory list) {
        list = new address[](_s.validatorList.length);
        for (uint256 v; v < list.length; ++v) {
            list[v] = _s.validatorList[v];
        }
    }

    /// @inheritdoc IMeshLedger
    function hashSubmission(
        uint256 taskId,
        uint32 round,
        bytes32 digest,
        uint64 numSamples,
        uint64 nonce,
        uint64 deadline
    ) public view returns (bytes32) {
        return _hashTypedDataV4(
            keccak256(abi.encode(SUBMISSION_TYPEHASH, taskId, round, digest, numSamples, nonce, deadline))
        );
    }

    /// @inheritdoc IMeshLedger
    function clock() external view returns (uint64 ledgerNow, uint64 pausedAt, uint64 pausedTotal) {
        Globals memory g = _s.globals;
        ledgerNow = _ledgerNow(g);
        pausedTotal = g.pausedTotal;
        if (_pausedNow(g)) pausedAt = g.pausedAt;
        else if (g.pausedAt != 0) pausedTotal += MAX_PAUSE; // a lapsed pause, not folded yet
    }

    /// @inheritdoc IMeshLedger
    function roleDelay() external view returns (uint64) {
        return _roleDelay;
    }

    /// @inheritdoc IMeshLedger
    function pendingRoleChange(bytes32 role, address account_, bool grant) external view returns (uint64) {
        return _s.pendingChanges[_changeKey(role, account_, grant)];
    }

    // ─── Roles ──────────────────────────────────────────────────────────────────────────────────────────────

    /// @dev Keeps the account flags, the contributor count, seats, the validator list and starting reputations
    /// in step with AccessControl. A contributor may not also be a validator (it would score its own update).
    function _grantRole(bytes32 role, address who) internal override returns (bool granted) {
        if (role == CONTRIBUTOR_ROLE && hasRole(VALIDATOR_ROLE, who)) {
            revert MeshLedger_RoleConflict(who, VALIDATOR_ROLE, CONTRIBUTOR_ROLE);
        }
        if (role == VALIDATOR_ROLE && hasRole(CONTRIBUTOR_ROLE, who)) {
            revert MeshLedger_RoleConflict(who, CONTRIBUTOR_ROLE, VALIDATOR_ROLE);
        }
        granted = super._grantRole(role, who);
        if (!granted) return false;
        Account storage a = _s.accounts[who];
        if (role == CONTRIBUTOR_ROLE) {
            _seatOf(a);
            ++_s.globals.contributorCount;
            a.flags |= FLAG_CONTRIBUTOR;
            if (a.contributorReputation == 0) {
                // The first grant starts the reputation; a re-grant keeps the one earned.
                a.contributorReputation = uint16(REPUTATION_START);
                emit ReputationInitialized(who, Role.Contributor, REPUTATION_START);
            }
        } else if (role == VALIDATOR_ROLE) {
            if (_s.validatorList.length == MAX_VALIDATORS) revert MeshLedger_TooManyValidators(MAX_VALIDATORS);
            _seatOf(a);
            _s.validatorList.push(who);
            ++_s.globals.listVersion;
            _s.validatorPosition[who] = _s.validatorList.length;
            a.flags |= FLAG_VALIDATOR;
            if (a.validatorReputation == 0) {
                a.validatorReputation = uint16(REPUTATION_START);
                emit ReputationInitialized(who, Role.Validator, REPUTATION_START);
            }
        } else if (role == AGGREGATOR_ROLE) {
            a.flags |= FLAG_AGGREGATOR;
        }
    }

    /// The account's seat, assigned at its first contributor or validator grant.
    function _seatOf(Account storage a) private returns (uint16 seat) {
        seat = a.seat;
        if (seat != 0) return seat;
        Globals storage g = _s.globals;
        if (g.lastSeat == MAX_SEATS) revert MeshLedger_TooManyMembers(MAX_SEATS);
        seat = ++g.lastSeat;
        a.seat = seat;
    }

    /// @dev Mirror of {_grantRole}. Reputation and seat stay with the account: revoking and re-granting a
    /// role neither resets a reputation nor gives a second seat. A validator leaving the role stays in the
    /// sets of the rounds already open (they are frozen).
    function _revokeRole(bytes32 role, address who) internal override returns (bool revoked) {
        revoked = super._revokeRole(role, who);
        if (!revoked) return false;
        Account storage a = _s.accounts[who];
        if (role == CONTRIBUTOR_ROLE) {
            --_s.globals.contributorCount;
            a.flags &= ~FLAG_CONTRIBUTOR;
        } else if (role == VALIDATOR_ROLE) {
            uint256 position = _s.validatorPosition[who];
            uint256 last = _s.validatorList.length;
            if (position != last) {
                address moved = _s.validatorList[last - 1];
                _s.validatorList[position - 1] = moved;
                _s.validatorPosition[moved] = position;
            }
            _s.validatorList.pop();
            ++_s.globals.listVersion;
            delete _s.validatorPosition[who];
            a.flags &= ~FLAG_VALIDATOR;
        } else if (role == AGGREGATOR_ROLE) {
            a.flags &= ~FLAG_AGGREGATOR;
        }
    }

    function _changeKey(bytes32 role, address who, bool grant) private pure returns (bytes32) {
        return keccak256(abi.encode(role, who, grant));
    }

    // ─── Internals: clock ───────────────────────────────────────────────────────────────────────────────────

    function _pausedNow(Globals memory g) private view returns (bool) {
        return g.pausedAt != 0 && block.timestamp < uint256(g.pausedAt) + MAX_PAUSE;
    }

    function _requireNotPaused(Globals memory g) private view {
        if (_pausedNow(g)) revert MeshLedger_Paused(uint64(g.pausedAt) + MAX_PAUSE);
    }

    /// A pause that lapsed by itself is folded into the totals when the next pause starts.
    function _foldLapsedPause(Globals memory g) private pure {
        if (g.pausedAt == 0) return;
        g.pausedTotal += uint40(MAX_PAUSE);
        g.lastPauseEnd = g.pausedAt + uint40(MAX_PAUSE);
        g.pausedAt = 0;
    }

    /// Wall time minus the time spent paused: the clock every round window runs on.
    function _ledgerNow(Globals memory g) private view returns (uint64) {
        // unchecked: pauses only happened in the past, so the time spent paused is below the wall time.
        unchecked {
            if (g.pausedAt == 0) return uint64(block.timestamp - g.pausedTotal);
            if (block.timestamp < uint256(g.pausedAt) + MAX_PAUSE) return uint64(g.pausedAt - g.pausedTotal);
            return uint64(block.timestamp - g.pausedTotal - MAX_PAUSE);
        }
    }

    // ─── Internals: rounds ──────────────────────────────────────────────────────────────────────────────────

    function _times(Config storage cfg, Live memory live, uint64 t) private view returns (Times memory tm) {
        tm.now_ = t;
        tm.submissionEnd = live.closedAt != 0 ? live.closedAt : uint64(live.openedAt) + cfg.submissionWindow;
        tm.commitEnd = live.commitClosedAt != 0 ? live.commitClosedAt : tm.submissionEnd + cfg.commitWindow;
        tm.revealEnd = tm.commitEnd + cfg.revealWindow;
        tm.graceEnd = tm.revealEnd + cfg.finalizeGrace;
    }

    /// The live round `round` of `taskId` with its times; `acting` requires the ledger not to be paused.
    function _liveTimes(uint256 taskId, uint32 round, bool acting)
        private
        view
        returns (Live memory live, Times memory tm)
    {
        Globals memory g = _s.globals;
        if (acting) _requireNotPaused(g);
        Config storage cfg = _existingConfig(taskId);
        live = _s.live[taskId];
        if (round != live.round) revert MeshLedger_WrongRound(taskId, live.round, round);
        tm = _times(cfg, live, _ledgerNow(g));
    }

    /// The reveal phase is over: its window ended, or the commit phase ended and every committer revealed.
    function _finalizable(Live memory live, Times memory tm) private pure returns (bool) {
        return tm.now_ >= tm.revealEnd || (tm.now_ >= tm.commitEnd && live.revealed == live.committed);
    }

    // ─── Internals: submissions ─────────────────────────────────────────────────────────────────────────────

    function _submissionRound(uint256 taskId, uint32 round)
        private
        view
        returns (Globals memory g, Live memory live, uint64 t, uint64 maxSamples)
    {
        g = _s.globals;
        _requireNotPaused(g);
        Config storage cfg = _existingConfig(taskId);
        live = _s.live[taskId];
        if (round != live.round) revert MeshLedger_WrongRound(taskId, live.round, round);
        t = _ledgerNow(g);
        uint64 submissionEnd = live.closedAt != 0 ? live.closedAt : uint64(live.openedAt) + cfg.submissionWindow;
        if (t >= submissionEnd) revert MeshLedger_SubmissionsClosed(taskId, round, submissionEnd);
        maxSamples = cfg.maxSamples;
    }

    function _recordSigned(uint256 taskId, Live memory live, SignedSubmission calldata sub, uint64 maxSamples)
        private
        returns (uint16 index)
    {
        if (block.timestamp > sub.deadline) {
            revert MeshLedger_SignatureExpired(sub.contributor, sub.deadline, block.timestamp);
        }
        Account storage stored = _s.accounts[sub.contributor];
        Account memory a = stored;
        if (a.flags & FLAG_CONTRIBUTOR == 0) revert MeshLedger_NotContributor(sub.contributor);
        if (sub.nonce != a.nonce) revert MeshLedger_InvalidNonce(sub.contributor, a.nonce, sub.nonce);
        bytes32 hash = hashSubmission(taskId, live.round, sub.digest, sub.numSamples, sub.nonce, sub.deadline);
        (address signer, ECDSA.RecoverError err,) = ECDSA.tryRecover(hash, sub.v, sub.r, sub.s);
        if (err != ECDSA.RecoverError.NoError || signer != sub.contributor) {
            revert MeshLedger_InvalidSignature(sub.contributor, signer);
        }
        // unchecked: a nonce grows by one per relayed submission; 2^48 of them will never be signed.
        unchecked {
            stored.nonce = a.nonce + 1;
        }
        return _record(taskId, live, sub.contributor, a.seat, sub.digest, sub.numSamples, maxSamples);
    }

    /// Records one update in the live round (`live` is updated in memory; the caller stores it). The same
    /// digest from two contributors is recorded twice: the update file names its author (R1).
    function _record(
        uint256 taskId,
        Live memory live,
        address contributor,
        uint16 seat,
        bytes32 digest,
        uint64 numSamples,
        uint64 maxSamples
    ) private returns (uint16 index) {
        if (digest == bytes32(0)) revert MeshLedger_InvalidDigest(digest);
        if (numSamples == 0) revert MeshLedger_InvalidSamples(contributor, numSamples);
        if (numSamples > maxSamples) revert MeshLedger_TooManySamples(contributor, numSamples, maxSamples);
        // index < MAX_UPDATES_PER_ROUND: the update that fills a round closes it (_closeIfComplete).
        index = live.submissionCount;

        uint256 word = seat / SEATS_PER_WORD;
        uint256 bit = uint256(1) << (SEAT_BITS_OFFSET + seat % SEATS_PER_WORD);
        uint256 seats = _s.seatWords[taskId][word];
        // forge-lint: disable-next-line(unsafe-typecast) the low 32 bits are the word's round tag by layout
        if (uint32(seats) != live.round) {
            seats = live.round; // the word still holds an earlier round's seats: start it afresh
        } else if (seats & bit != 0) {
            revert MeshLedger_AlreadySubmitted(taskId, live.round, contributor);
        }
        _s.seatWords[taskId][word] = seats | bit;

        _s.entries[taskId][index] = Entry({contributor: contributor, numSamples: numSamples});
        // forge-lint: disable-next-line(unsafe-typecast) index < MAX_UPDATES_PER_ROUND = 112 (see above)
        live.submissionCount = uint8(index + 1);
        emit UpdateSubmitted(taskId, live.round, contributor, index, digest, numSamples, msg.sender);
    }

    /// Closes submissions once every contributor has submitted, so the commit phase can start early, or once the
    /// round is full (MAX_UPDATES_PER_ROUND), so no update can take an index the score words cannot hold.
    function _closeIfComplete(uint256 taskId, Live memory live, uint256 contributors, address last, uint64 t)
        private
    {
        if (live.submissionCount >= contributors || live.submissionCount == MAX_UPDATES_PER_ROUND) {
            live.closedAt = uint40(t);
            emit SubmissionsClosed(taskId, live.round, last, live.submissionCount, t);
        }
    }

    // ─── Internals: scores ──────────────────────────────────────────────────────────────────────────────────

    /// The index of `who` in the validator set of the live round `round`.
    /// The index of `who` in the validator set of the live round: its position must belong to the set
    /// composition the round uses (an older one is stale: the account left the set since).
    function _setIndex(uint256 taskId, Live memory live, address who) private view returns (uint256) {
        Position memory pos = _s.positions[taskId][who];
        if (pos.epoch != live.setEpoch) revert MeshLedger_NotInValidatorSet(taskId, live.round, who);
        return pos.index;
    }

    /// The caller's index in the set, once it may reveal: it committed, has not revealed, and the lengths fit.
    function _revealer(uint256 taskId, Live memory live, uint256 scoreBytes, uint256 reasonBytes)
        private
        view
        returns (uint256 k)
    {
        k = _setIndex(taskId, live, msg.sender);
        if ((live.committed >> k) & 1 == 0) revert MeshLedger_NotCommitted(taskId, live.round, msg.sender);
        if ((live.revealed >> k) & 1 != 0) revert MeshLedger_AlreadyRevealed(taskId, live.round, msg.sender);
        uint256 n = live.submissionCount;
        if (scoreBytes != 2 * n || reasonBytes != n) revert MeshLedger_RevealLength(2 * n, scoreBytes, n, reasonBytes);
    }

    function _matchCommitment(
        uint256 taskId,
        uint32 round,
        uint256 k,
        bytes calldata scores,
        bytes calldata reasons,
        bytes32 salt
    ) private view {
        bytes32 committed = bytes32(_s.scoreWords[taskId][k << WORDS_PER_MEMBER_LOG2]);
        bytes32 computed = _commitment(taskId, round, msg.sender, scores, reasons, salt);
        if (computed != committed) revert MeshLedger_RevealMismatch(taskId, round, msg.sender, committed, computed);
    }

    function _commitment(
        uint256 taskId,
        uint32 round,
        address validator,
        bytes calldata scores,
        bytes calldata reasons,
        bytes32 salt
    ) private view returns (bytes32) {
        return keccak256(
            abi.encode(
                block.chainid, address(this), taskId, round, validator, keccak256(scores), keccak256(reasons), salt
            )
        );
    }

    /// Every score within [-SCORE_ONE, SCORE_ONE]; a nonzero reason (a hard reject) only with -SCORE_ONE.
    function _checkScores(bytes calldata scores, bytes calldata reasons, uint256 n) private pure {
        for (uint256 i; i < n;) {
            int256 score;
            uint256 reason;
            // Score i is the big-endian int16 at byte 2i, reason i the byte at i; the lengths were checked.
            assembly ("memory-safe") {
                score := sar(240, calldataload(add(scores.offset, shl(1, i))))
                reason := byte(0, calldataload(add(reasons.offset, i)))
            }
            // forge-lint: disable-next-line(unsafe-typecast) i < n ≤ MAX_UPDATES_PER_ROUND; score is an int16
            if (score > SCORE_ONE || score < -SCORE_ONE) revert MeshLedger_InvalidScore(uint16(i), int16(score));
            if (reason != 0 && score != -SCORE_ONE) {
                // forge-lint: disable-next-line(unsafe-typecast) idem; reason is one byte
                revert MeshLedger_InvalidReason(uint16(i), int16(score), uint8(reason));
            }
            unchecked {
                ++i;
            }
        }
    }

    /// Stores the revealed scores, 16 per word as they come in calldata (the bytes past the last score zeroed),
    /// XORed with FLIP so that every stored word is nonzero.
    function _storeScores(mapping(uint256 => uint256) storage words, uint256 base, bytes calldata scores, uint256 n)
        private
    {
        uint256 wordCount = (n + 15) >> 4;
        for (uint256 w; w < wordCount; ++w) {
            uint256 word;
            assembly ("memory-safe") {
                word := calldataload(add(scores.offset, shl(5, w)))
            }
            uint256 used = 2 * n - 32 * w; // bytes of this word that hold scores
            if (used < 32) word &= ~(type(uint256).max >> (8 * used));
            words[base + w] = word ^ Consensus.FLIP;
        }
    }

    // ─── Internals: helpers ─────────────────────────────────────────────────────────────────────────────────

    function _existingConfig(uint256 taskId) private view returns (Config storage cfg) {
        cfg = _s.configs[taskId];
        if (cfg.submissionWindow == 0) revert MeshLedger_UnknownTask(taskId);
    }

    function _liveRound(uint256 taskId, uint32 round) private view returns (Live memory live) {
        _existingConfig(taskId);
        live = _s.live[taskId];
        if (round != live.round) revert MeshLedger_RoundNotLive(taskId, round, live.round);
    }

    function _base(uint256 taskId, uint32 round) private view returns (bytes32) {
        return round == 1 ? _s.configs[taskId].genesisDigest : _s.aggregates[taskId][round - 1];
    }

    function _ruleFits(uint8 rule, uint32 ruleParam) private pure returns (bool) {
        // forge-lint: disable-next-line(unsafe-typecast) the low 16 bits are the rule's argument by definition
        uint16 argument = uint16(ruleParam);
        if (rule == RULE_FEDAVG || rule == RULE_MEDIAN) return argument == 0;
        if (rule == RULE_TRIMMED_MEAN) return argument >= 1 && argument < 5_000;
        return rule == RULE_MULTI_KRUM;
    }


}
