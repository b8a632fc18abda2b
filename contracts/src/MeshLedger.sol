// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {Pausable} from "@openzeppelin/contracts/utils/Pausable.sol";

import {IMeshLedger} from "./interfaces/IMeshLedger.sol";
import {IMeshToken} from "./interfaces/IMeshToken.sol";
import {Bits} from "./libraries/Bits.sol";

/// @title MeshLedger
/// @notice The provenance ledger of consortium training runs. See {IMeshLedger} and docs/contracts.md.
/// @dev Storage keeps what the contract enforces: the live round of each task (its submissions, each
/// validator's ballot, which contributors already submitted), the lineage (each round's aggregate), and each
/// account's reputations and nonce. Everything else — the digest of every update, every reason code, every
/// payment — is in the logs, which carry enough to rebuild the whole history (docs/contracts.md, "Events").
/// Gas: per-round slots that only matter while a round is live are keyed by task (and tagged with the round
/// where needed), so a later round overwrites them (a nonzero-to-nonzero store) instead of filling a fresh
/// slot each round; reputations are packed eight to a slot by member seat, so finalization updates a few
/// slots instead of one per member.
contract MeshLedger is IMeshLedger, AccessControl, EIP712, Pausable {
    using Bits for uint256;

    // ─── Constants ──────────────────────────────────────────────────────────────────────────────────────────

    /// @notice Role of the members that train and submit updates.
    bytes32 public constant CONTRIBUTOR_ROLE = keccak256("CONTRIBUTOR_ROLE");
    /// @notice Role of the members that check updates and vote on them.
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

    /// @notice Updates one round can hold (a ballot keeps two 112-bit bitmaps and the round in one slot).
    uint256 public constant MAX_UPDATES_PER_ROUND = 112;
    /// @notice Validators at once (finalization reads every validator's ballot).
    uint256 public constant MAX_VALIDATORS = 32;
    /// @notice Member seats ever assigned. A contributor or validator gets a seat at its first grant and keeps
    /// it for good, so a revoked and re-granted contributor cannot submit twice in a round.
    uint256 public constant MAX_SEATS = type(uint16).max;

    /// @notice Reputation bounds and starting value, for both the contributor and the validator reputation.
    uint32 public constant REPUTATION_MIN = 100;
    uint32 public constant REPUTATION_MAX = 10_000;
    uint32 public constant REPUTATION_START = 5_000;
    /// @notice Contributor reputation change per accepted / rejected update.
    uint32 public constant CONTRIBUTOR_GAIN = 500;
    uint32 public constant CONTRIBUTOR_LOSS = 1_500;
    /// @notice Validator reputation change per round in which it voted only with / at least once against the outcome.
    uint32 public constant VALIDATOR_GAIN = 200;
    uint32 public constant VALIDATOR_LOSS = 1_000;
    /// @notice Share of each round's budget for the validators, in basis points; the rest goes to contributors.
    uint256 public constant VALIDATOR_SHARE_BPS = 1_000;

    uint8 private constant FLAG_CONTRIBUTOR = 1;
    uint8 private constant FLAG_VALIDATOR = 2;
    uint8 private constant FLAG_AGGREGATOR = 4;
    /// Seat words: bits 0-31 hold the round the word belongs to, bits 32-255 one bit per contributor seat.
    uint256 private constant SEATS_PER_WORD = 224;
    uint256 private constant SEAT_BITS_OFFSET = 32;
    /// Reputations: 32-bit values, four seats (each a contributor and a validator value) per slot.
    uint256 private constant SEATS_PER_REP_WORD_LOG2 = 2;

    // ─── Storage ────────────────────────────────────────────────────────────────────────────────────────────

    /// One slot per address: the role flags mirror AccessControl so that a hot path reads roles, seat and
    /// nonce in one load (kept in step by the _grantRole/_revokeRole overrides). Reputations are kept by seat
    /// in `_reputations`.
    struct Account {
        uint64 nonce;
        uint16 seat;
        uint8 flags;
    }

    /// A validator in the list finalization visits.
    struct Seated {
        address member;
        uint16 seat;
    }

    struct Config {
        bytes32 specDigest;
        bytes32 genesisDigest;
        uint128 rewardPerRound;
        uint32 submissionWindow; // nonzero for every created task: doubles as the existence check
        uint32 voteWindow;
        uint32 ruleParam;
        uint16 quorum;
        uint8 rule;
    }

    /// The live round of a task.
    struct Live {
        uint32 round;
        uint40 openedAt;
        uint40 closedAt; // nonzero once every contributor submitted (submissions closed before the window)
        uint16 submissionCount;
    }

    /// Update `index` of the task's live round (the slot is reused by the same index of later rounds; only
    /// indexes below the live round's submission count are read).
    struct Entry {
        address contributor;
        uint64 numSamples;
        uint16 seat;
    }

    /// A validator's verdicts on one round (reused by later rounds).
    struct Ballot {
        uint32 round;
        uint112 voted;
        uint112 accepts;
    }

    /// The current validators' ballots on the round being finalized, as bitmaps (zero for a validator that has
    /// not voted in it), and whether each of them has voted on every update.
    struct Votes {
        Seated[] validators;
        uint256[] voted;
        uint256[] accepts;
        bool allVoted;
    }

    IMeshToken private immutable _token;

    uint64 private _taskCount;
    uint32 private _contributorCount;
    uint16 private _lastSeat;

    Seated[] private _validatorList;
    mapping(address validator => uint256 position) private _validatorPosition; // 1-based; 0 = not listed

    mapping(address who => Account) private _accounts;
    mapping(uint256 word => uint256 reputations) private _reputations;
    mapping(uint256 taskId => Config) private _configs;
    mapping(uint256 taskId => Live) private _live;
    mapping(uint256 taskId => mapping(uint256 word => uint256 seats)) private _seatWords;
    mapping(uint256 taskId => mapping(uint256 index => Entry)) private _entries;
    mapping(uint256 taskId => mapping(address validator => Ballot)) private _ballots;
    mapping(uint256 taskId => mapping(uint32 round => bytes32 digest)) private _aggregates;

    // ─── Construction ───────────────────────────────────────────────────────────────────────────────────────

    /// @param admin receives the admin role (grants roles, creates tasks, pauses).
    /// @param token_ the reward token; its deployer must then call `setMinter(<this ledger>)`.
    constructor(address admin, IMeshToken token_) EIP712("MeshLedger", "1") {
        if (address(token_) == address(0)) revert MeshLedger_ZeroToken();
        if (admin == address(0)) revert MeshLedger_ZeroAdmin();
        _token = token_;
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
    }

    // ─── Administration ─────────────────────────────────────────────────────────────────────────────────────

    /// @inheritdoc IMeshLedger
    function createTask(TaskParams calldata p) external onlyRole(DEFAULT_ADMIN_ROLE) returns (uint256 taskId) {
        if (p.specDigest == bytes32(0)) revert MeshLedger_InvalidDigest(p.specDigest);
        if (p.genesisDigest == bytes32(0)) revert MeshLedger_InvalidDigest(p.genesisDigest);
        if (!_ruleFits(p.rule, p.ruleParam)) revert MeshLedger_InvalidRule(p.rule, p.ruleParam);
        if (p.quorum == 0) revert MeshLedger_InvalidQuorum(p.quorum);
        if (p.submissionWindow == 0 || p.voteWindow == 0) {
            revert MeshLedger_InvalidWindows(p.submissionWindow, p.voteWindow);
        }
        taskId = ++_taskCount;
        _configs[taskId] = Config({
            specDigest: p.specDigest,
            genesisDigest: p.genesisDigest,
            rewardPerRound: p.rewardPerRound,
            submissionWindow: p.submissionWindow,
            voteWindow: p.voteWindow,
            ruleParam: p.ruleParam,
            quorum: p.quorum,
            rule: p.rule
        });
        _live[taskId] = Live({round: 1, openedAt: uint40(block.timestamp), closedAt: 0, submissionCount: 0});
        // Tag seat word 0 with round 1 now, so that even the task's first submission updates a nonzero slot.
        _seatWords[taskId][0] = 1;
        emit TaskCreated(taskId, msg.sender, p);
        emit RoundOpened(taskId, 1, msg.sender, p.genesisDigest, uint64(block.timestamp));
    }

    /// @inheritdoc IMeshLedger
    function pause() external onlyRole(DEFAULT_ADMIN_ROLE) {
        _pause();
    }

    /// @inheritdoc IMeshLedger
    function unpause() external onlyRole(DEFAULT_ADMIN_ROLE) {
        _unpause();
    }

    // ─── Submissions ────────────────────────────────────────────────────────────────────────────────────────

    /// @inheritdoc IMeshLedger
    function submitUpdate(uint256 taskId, uint32 round, bytes32 digest, uint64 numSamples)
        external
        whenNotPaused
        returns (uint16 index)
    {
        Account memory a = _accounts[msg.sender];
        if (a.flags & FLAG_CONTRIBUTOR == 0) revert MeshLedger_NotContributor(msg.sender);
        Live memory live = _openRound(taskId, round);
        index = _record(taskId, live, msg.sender, a.seat, digest, numSamples);
        _closeIfComplete(taskId, live, _contributorCount, msg.sender);
        _live[taskId] = live;
    }

    /// @inheritdoc IMeshLedger
    function submitUpdateFor(uint256 taskId, uint32 round, SignedSubmission calldata sub)
        external
        whenNotPaused
        returns (uint16 index)
    {
        Live memory live = _openRound(taskId, round);
        index = _recordSigned(taskId, live, sub);
        _closeIfComplete(taskId, live, _contributorCount, sub.contributor);
        _live[taskId] = live;
    }

    /// @inheritdoc IMeshLedger
    function submitUpdatesFor(uint256 taskId, uint32 round, SignedSubmission[] calldata subs)
        external
        whenNotPaused
        returns (uint16 firstIndex)
    {
        if (subs.length == 0) revert MeshLedger_EmptyBatch();
        Live memory live = _openRound(taskId, round);
        uint256 contributors = _contributorCount;
        firstIndex = live.submissionCount;
        for (uint256 i; i < subs.length; ++i) {
            // The same rule as one call per item: once the round closed early, later items are refused.
            if (live.closedAt != 0) revert MeshLedger_SubmissionsClosed(taskId, round, live.closedAt);
            _recordSigned(taskId, live, subs[i]);
            _closeIfComplete(taskId, live, contributors, subs[i].contributor);
        }
        _live[taskId] = live;
    }

    // ─── Votes ──────────────────────────────────────────────────────────────────────────────────────────────

    /// @inheritdoc IMeshLedger
    function vote(uint256 taskId, uint32 round, uint16 index, bool accept, uint8 reason) external whenNotPaused {
        if (accept == (reason != 0)) revert MeshLedger_InvalidReason(index, accept, reason);
        // An index beyond 255 shifts out to an empty bitmap, which _castVotes refuses as an unknown update.
        uint256 bit = uint256(1) << index;
        uint256 accepts = accept ? bit : 0;
        _castVotes(taskId, round, bit, accepts);
        emit VotesCast(taskId, round, msg.sender, bit, accepts, abi.encodePacked(reason));
    }

    /// @inheritdoc IMeshLedger
    function voteBatch(uint256 taskId, uint32 round, uint256 indexes, uint256 accepts, bytes calldata reasons)
        external
        whenNotPaused
    {
        _castVotes(taskId, round, indexes, accepts);
        _checkReasons(indexes, accepts, reasons);
        emit VotesCast(taskId, round, msg.sender, indexes, accepts, reasons);
    }

    // ─── Finalization ───────────────────────────────────────────────────────────────────────────────────────

    /// @inheritdoc IMeshLedger
    function finalizeRound(uint256 taskId, uint32 round, bytes32 aggregateDigest_, uint256 acceptedBitmap)
        external
        whenNotPaused
    {
        if (_accounts[msg.sender].flags & FLAG_AGGREGATOR == 0) revert MeshLedger_NotAggregator(msg.sender);
        Config storage cfg = _existingConfig(taskId);
        Live memory live = _live[taskId];
        if (round != live.round) revert MeshLedger_WrongRound(taskId, live.round, round);

        uint256 n = live.submissionCount;
        Votes memory votes = _votesOf(taskId, round, n);
        {
            uint64 submissionEnd = _submissionEnd(cfg.submissionWindow, live);
            uint64 voteEnd = submissionEnd + cfg.voteWindow;
            if (block.timestamp < voteEnd && (block.timestamp < submissionEnd || !votes.allVoted)) {
                revert MeshLedger_FinalizeTooEarly(taskId, round, voteEnd);
            }
        }
        // The quorum outcome: update i is accepted iff at least `quorum` current validators accept it.
        uint256 outcome = Bits.atLeast(votes.accepts, cfg.quorum) & Bits.lowMask(n);
        if (outcome != acceptedBitmap) revert MeshLedger_AcceptedSetMismatch(taskId, round, outcome, acceptedBitmap);
        if (outcome == 0) {
            bytes32 base = _base(taskId, round);
            if (aggregateDigest_ != base) revert MeshLedger_AggregateMustBeBase(base, aggregateDigest_);
        } else if (aggregateDigest_ == bytes32(0)) {
            revert MeshLedger_InvalidDigest(aggregateDigest_);
        }

        _aggregates[taskId][round] = aggregateDigest_;
        _live[taskId] = Live({round: round + 1, openedAt: uint40(block.timestamp), closedAt: 0, submissionCount: 0});
        Settlement[] memory settlements = _settle(taskId, n, outcome, cfg.rewardPerRound, votes);
        emit RoundFinalized(taskId, round, msg.sender, aggregateDigest_, outcome, cfg.rule, cfg.ruleParam, settlements);
        emit RoundOpened(taskId, round + 1, msg.sender, aggregateDigest_, uint64(block.timestamp));
        _mintRewards(settlements);
    }

    // ─── Views ──────────────────────────────────────────────────────────────────────────────────────────────

    /// @inheritdoc IMeshLedger
    function token() external view returns (address) {
        return address(_token);
    }

    /// @inheritdoc IMeshLedger
    function taskCount() external view returns (uint256) {
        return _taskCount;
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
            voteWindow: cfg.voteWindow,
            rewardPerRound: cfg.rewardPerRound
        });
        currentRound_ = _live[taskId].round;
    }

    /// @inheritdoc IMeshLedger
    function currentRound(uint256 taskId) external view returns (uint32) {
        _existingConfig(taskId);
        return _live[taskId].round;
    }

    /// @inheritdoc IMeshLedger
    function roundView(uint256 taskId, uint32 round) external view returns (RoundView memory v) {
        Config storage cfg = _existingConfig(taskId);
        Live memory live = _live[taskId];
        if (round == 0 || round > live.round) revert MeshLedger_UnknownRound(taskId, round);
        v.baseDigest = _base(taskId, round);
        if (round < live.round) {
            v.phase = Phase.Finalized;
            v.aggregateDigest = _aggregates[taskId][round];
            return v;
        }
        v.openedAt = live.openedAt;
        v.submissionEnd = _submissionEnd(cfg.submissionWindow, live);
        v.voteEnd = v.submissionEnd + cfg.voteWindow;
        v.submissionCount = live.submissionCount;
        if (block.timestamp < v.submissionEnd) {
            v.phase = Phase.Open;
        } else {
            v.phase = block.timestamp < v.voteEnd ? Phase.Voting : Phase.Closed;
            v.finalizable = v.phase == Phase.Closed || _votesOf(taskId, round, live.submissionCount).allVoted;
        }
    }

    /// @inheritdoc IMeshLedger
    function baseDigest(uint256 taskId, uint32 round) external view returns (bytes32) {
        _existingConfig(taskId);
        if (round == 0 || round > _live[taskId].round) revert MeshLedger_UnknownRound(taskId, round);
        return _base(taskId, round);
    }

    /// @inheritdoc IMeshLedger
    function aggregateDigest(uint256 taskId, uint32 round) external view returns (bytes32) {
        _existingConfig(taskId);
        if (round == 0 || round > _live[taskId].round) revert MeshLedger_UnknownRound(taskId, round);
        return _aggregates[taskId][round];
    }

    /// @inheritdoc IMeshLedger
    function submission(uint256 taskId, uint32 round, uint16 index)
        external
        view
        returns (address contributor, uint64 numSamples)
    {
        Live memory live = _liveRound(taskId, round);
        if (index >= live.submissionCount) {
            revert MeshLedger_UnknownUpdates(taskId, round, uint256(1) << index, live.submissionCount);
        }
        Entry memory e = _entries[taskId][index];
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
            Entry memory e = _entries[taskId][i];
            if (e.contributor == contributor) return (true, i, e.numSamples);
        }
        return (false, 0, 0);
    }

    /// @inheritdoc IMeshLedger
    function ballot(uint256 taskId, uint32 round, address validator)
        external
        view
        returns (uint256 indexes, uint256 accepts)
    {
        _liveRound(taskId, round);
        Ballot memory b = _ballots[taskId][validator];
        if (b.round != round) return (0, 0);
        return (b.voted, b.accepts);
    }

    /// @inheritdoc IMeshLedger
    function tally(uint256 taskId, uint32 round)
        external
        view
        returns (uint256 acceptedBitmap, uint16[] memory acceptVotes)
    {
        Live memory live = _liveRound(taskId, round);
        uint256[] memory accepts = _votesOf(taskId, round, live.submissionCount).accepts;
        uint16 quorum = _configs[taskId].quorum;
        acceptVotes = new uint16[](live.submissionCount);
        for (uint256 i; i < acceptVotes.length; ++i) {
            acceptVotes[i] = _acceptVotes(accepts, i);
            if (acceptVotes[i] >= quorum) acceptedBitmap |= uint256(1) << i;
        }
    }

    /// @inheritdoc IMeshLedger
    function account(address account_) external view returns (AccountView memory) {
        Account memory a = _accounts[account_];
        return AccountView({
            nonce: a.nonce,
            contributorReputation: _rep(a.seat, Role.Contributor),
            validatorReputation: _rep(a.seat, Role.Validator),
            memberNumber: a.seat,
            contributor: a.flags & FLAG_CONTRIBUTOR != 0,
            validator: a.flags & FLAG_VALIDATOR != 0,
            aggregator: a.flags & FLAG_AGGREGATOR != 0
        });
    }

    /// @inheritdoc IMeshLedger
    function reputation(address account_) external view returns (uint32 contributor, uint32 validator) {
        Account memory a = _accounts[account_];
        return (_rep(a.seat, Role.Contributor), _rep(a.seat, Role.Validator));
    }

    /// @inheritdoc IMeshLedger
    function nonces(address account_) external view returns (uint64) {
        return _accounts[account_].nonce;
    }

    /// @inheritdoc IMeshLedger
    function contributorCount() external view returns (uint256) {
        return _contributorCount;
    }

    /// @inheritdoc IMeshLedger
    function validators() external view returns (address[] memory list) {
        list = new address[](_validatorList.length);
        for (uint256 v; v < list.length; ++v) {
            list[v] = _validatorList[v].member;
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

    // ─── Roles ──────────────────────────────────────────────────────────────────────────────────────────────

    /// @dev Keeps the account flags, the contributor count, seats, the validator list and starting reputations
    /// in step with AccessControl. A contributor may not also be a validator (it would vote on its own update).
    function _grantRole(bytes32 role, address who) internal override returns (bool granted) {
        if (role == CONTRIBUTOR_ROLE && hasRole(VALIDATOR_ROLE, who)) {
            revert MeshLedger_RoleConflict(who, VALIDATOR_ROLE, CONTRIBUTOR_ROLE);
        }
        if (role == VALIDATOR_ROLE && hasRole(CONTRIBUTOR_ROLE, who)) {
            revert MeshLedger_RoleConflict(who, CONTRIBUTOR_ROLE, VALIDATOR_ROLE);
        }
        granted = super._grantRole(role, who);
        if (!granted) return false;
        Account storage a = _accounts[who];
        if (role == CONTRIBUTOR_ROLE) {
            uint16 seat = _seatOf(a);
            ++_contributorCount;
            a.flags |= FLAG_CONTRIBUTOR;
            _initRep(who, seat, Role.Contributor);
        } else if (role == VALIDATOR_ROLE) {
            if (_validatorList.length == MAX_VALIDATORS) revert MeshLedger_TooManyValidators(MAX_VALIDATORS);
            uint16 seat = _seatOf(a);
            _validatorList.push(Seated({member: who, seat: seat}));
            _validatorPosition[who] = _validatorList.length;
            a.flags |= FLAG_VALIDATOR;
            _initRep(who, seat, Role.Validator);
        } else if (role == AGGREGATOR_ROLE) {
            a.flags |= FLAG_AGGREGATOR;
        }
    }

    /// The account's seat, assigned at its first contributor or validator grant.
    function _seatOf(Account storage a) private returns (uint16 seat) {
        seat = a.seat;
        if (seat != 0) return seat;
        if (_lastSeat == MAX_SEATS) revert MeshLedger_TooManyMembers(MAX_SEATS);
        seat = ++_lastSeat;
        a.seat = seat;
    }

    function _initRep(address who, uint16 seat, Role role) private {
        if (_rep(seat, role) != 0) return; // granted before: the reputation earned stays
        _setRep(seat, role, REPUTATION_START);
        emit ReputationInitialized(who, role, REPUTATION_START);
    }

    /// @dev Mirror of {_grantRole}. Reputation and seat stay with the account: revoking and re-granting a
    /// role neither resets a reputation nor gives a second seat.
    function _revokeRole(bytes32 role, address who) internal override returns (bool revoked) {
        revoked = super._revokeRole(role, who);
        if (!revoked) return false;
        Account storage a = _accounts[who];
        if (role == CONTRIBUTOR_ROLE) {
            --_contributorCount;
            a.flags &= ~FLAG_CONTRIBUTOR;
        } else if (role == VALIDATOR_ROLE) {
            uint256 position = _validatorPosition[who];
            uint256 last = _validatorList.length;
            if (position != last) {
                Seated memory moved = _validatorList[last - 1];
                _validatorList[position - 1] = moved;
                _validatorPosition[moved.member] = position;
            }
            _validatorList.pop();
            delete _validatorPosition[who];
            a.flags &= ~FLAG_VALIDATOR;
        } else if (role == AGGREGATOR_ROLE) {
            a.flags &= ~FLAG_AGGREGATOR;
        }
    }

    // ─── Internals: submissions ─────────────────────────────────────────────────────────────────────────────

    function _openRound(uint256 taskId, uint32 round) private view returns (Live memory live) {
        Config storage cfg = _existingConfig(taskId);
        live = _live[taskId];
        if (round != live.round) revert MeshLedger_WrongRound(taskId, live.round, round);
        uint64 submissionEnd = _submissionEnd(cfg.submissionWindow, live);
        if (block.timestamp >= submissionEnd) revert MeshLedger_SubmissionsClosed(taskId, round, submissionEnd);
    }

    function _recordSigned(uint256 taskId, Live memory live, SignedSubmission calldata sub)
        private
        returns (uint16 index)
    {
        if (block.timestamp > sub.deadline) {
            revert MeshLedger_SignatureExpired(sub.contributor, sub.deadline, block.timestamp);
        }
        Account storage stored = _accounts[sub.contributor];
        Account memory a = stored;
        if (a.flags & FLAG_CONTRIBUTOR == 0) revert MeshLedger_NotContributor(sub.contributor);
        if (sub.nonce != a.nonce) revert MeshLedger_InvalidNonce(sub.contributor, a.nonce, sub.nonce);
        bytes32 hash = hashSubmission(taskId, live.round, sub.digest, sub.numSamples, sub.nonce, sub.deadline);
        (address signer, ECDSA.RecoverError err,) = ECDSA.tryRecover(hash, sub.v, sub.r, sub.s);
        if (err != ECDSA.RecoverError.NoError || signer != sub.contributor) {
            revert MeshLedger_InvalidSignature(sub.contributor, signer);
        }
        // unchecked: a nonce grows by one per relayed submission; 2^64 of them will never be signed.
        unchecked {
            stored.nonce = a.nonce + 1;
        }
        return _record(taskId, live, sub.contributor, a.seat, sub.digest, sub.numSamples);
    }

    /// Records one update in the live round (`live` is updated in memory; the caller stores it).
    function _record(
        uint256 taskId,
        Live memory live,
        address contributor,
        uint16 seat,
        bytes32 digest,
        uint64 numSamples
    ) private returns (uint16 index) {
        if (digest == bytes32(0)) revert MeshLedger_InvalidDigest(digest);
        if (numSamples == 0) revert MeshLedger_InvalidSamples(contributor, numSamples);
        // index < MAX_UPDATES_PER_ROUND: the update that fills a round closes it (_closeIfComplete).
        index = live.submissionCount;

        uint256 word = seat / SEATS_PER_WORD;
        uint256 bit = uint256(1) << (SEAT_BITS_OFFSET + seat % SEATS_PER_WORD);
        uint256 seats = _seatWords[taskId][word];
        // forge-lint: disable-next-line(unsafe-typecast) the low 32 bits are the word's round tag by layout
        if (uint32(seats) != live.round) {
            seats = live.round; // the word still holds an earlier round's seats: start it afresh
        } else if (seats & bit != 0) {
            revert MeshLedger_AlreadySubmitted(taskId, live.round, contributor);
        }
        _seatWords[taskId][word] = seats | bit;

        _entries[taskId][index] = Entry({contributor: contributor, numSamples: numSamples, seat: seat});
        // unchecked: index < MAX_UPDATES_PER_ROUND was checked above.
        unchecked {
            live.submissionCount = index + 1;
        }
        emit UpdateSubmitted(taskId, live.round, contributor, index, digest, numSamples, msg.sender);
    }

    /// Closes submissions once every contributor has submitted, so voting can start early, or once the round is
    /// full (MAX_UPDATES_PER_ROUND), so no update can take an index the ballots cannot hold.
    function _closeIfComplete(uint256 taskId, Live memory live, uint256 contributors, address last) private {
        if (live.submissionCount >= contributors || live.submissionCount == MAX_UPDATES_PER_ROUND) {
            live.closedAt = uint40(block.timestamp);
            emit SubmissionsClosed(taskId, live.round, last, live.submissionCount, uint64(block.timestamp));
        }
    }

    // ─── Internals: votes ───────────────────────────────────────────────────────────────────────────────────

    function _castVotes(uint256 taskId, uint32 round, uint256 indexes, uint256 accepts) private {
        if (_accounts[msg.sender].flags & FLAG_VALIDATOR == 0) revert MeshLedger_NotValidator(msg.sender);
        Config storage cfg = _existingConfig(taskId);
        Live memory live = _live[taskId];
        if (round != live.round) revert MeshLedger_WrongRound(taskId, live.round, round);
        uint64 voteEnd = _submissionEnd(cfg.submissionWindow, live) + cfg.voteWindow;
        if (block.timestamp >= voteEnd) revert MeshLedger_VotingClosed(taskId, round, voteEnd);
        if (indexes == 0 || indexes >> live.submissionCount != 0) {
            revert MeshLedger_UnknownUpdates(taskId, round, indexes, live.submissionCount);
        }
        if (accepts & ~indexes != 0) revert MeshLedger_InvalidBallot(indexes, accepts);

        Ballot memory b = _ballots[taskId][msg.sender];
        if (b.round != round) {
            b = Ballot({round: round, voted: 0, accepts: 0});
        } else if (uint256(b.voted) & indexes != 0) {
            revert MeshLedger_AlreadyVoted(taskId, round, msg.sender, uint256(b.voted) & indexes);
        }
        // Both fit in 112 bits: indexes < 2^submissionCount ≤ 2^112 was checked above, accepts ⊆ indexes.
        // forge-lint: disable-next-line(unsafe-typecast)
        b.voted |= uint112(indexes);
        // forge-lint: disable-next-line(unsafe-typecast)
        b.accepts |= uint112(accepts);
        _ballots[taskId][msg.sender] = b;
    }

    function _checkReasons(uint256 indexes, uint256 accepts, bytes calldata reasons) private pure {
        uint256 expected = indexes.popcount();
        if (reasons.length != expected) revert MeshLedger_ReasonCount(expected, reasons.length);
        uint256 k;
        for (uint256 i; indexes >> i != 0; ++i) {
            if ((indexes >> i) & 1 == 0) continue;
            uint8 reason = uint8(reasons[k++]);
            bool accept = (accepts >> i) & 1 != 0;
            // forge-lint: disable-next-line(unsafe-typecast) i < submissionCount ≤ 112
            if (accept == (reason != 0)) revert MeshLedger_InvalidReason(uint16(i), accept, reason);
        }
    }

    // ─── Internals: finalization ────────────────────────────────────────────────────────────────────────────

    function _votesOf(uint256 taskId, uint32 round, uint256 n) private view returns (Votes memory votes) {
        Seated[] memory vals = _validatorList;
        votes = Votes(vals, new uint256[](vals.length), new uint256[](vals.length), true);
        uint256 full = Bits.lowMask(n);
        for (uint256 v; v < vals.length; ++v) {
            Ballot memory b = _ballots[taskId][vals[v].member];
            if (b.round == round) {
                votes.voted[v] = b.voted;
                votes.accepts[v] = b.accepts;
            }
            if (votes.voted[v] != full) votes.allVoted = false;
        }
    }

    /// Settles every participant's reputation and computes the rewards: contributors first (update-index
    /// order), then the validators that voted (validator-list order).
    function _settle(uint256 taskId, uint256 n, uint256 outcome, uint256 budget, Votes memory votes)
        private
        returns (Settlement[] memory out)
    {
        out = new Settlement[](n + votes.validators.length);
        uint256 validatorShare = budget * VALIDATOR_SHARE_BPS / 10_000;
        _settleContributors(taskId, n, outcome, budget - validatorShare, out);
        uint256 count = _settleValidators(n, outcome, votes, validatorShare, out);
        // Drop the slots of validators that did not vote (memory only: the array was sized for all of them).
        assembly ("memory-safe") {
            mstore(out, count)
        }
    }

    /// Mints every nonzero reward in one call. Each reward was rounded down and the rounding dust is never
    /// minted, so the token supply is exactly the sum of the rewards in RoundFinalized events.
    function _mintRewards(Settlement[] memory settlements) private {
        address[] memory to = new address[](settlements.length);
        uint256[] memory amounts = new uint256[](settlements.length);
        uint256 count;
        for (uint256 i; i < settlements.length; ++i) {
            if (settlements[i].reward == 0) continue;
            to[count] = settlements[i].account;
            amounts[count] = settlements[i].reward;
            ++count;
        }
        if (count == 0) return;
        assembly ("memory-safe") {
            mstore(to, count)
            mstore(amounts, count)
        }
        _token.mintBatch(to, amounts);
    }

    function _acceptVotes(uint256[] memory accepts, uint256 i) private pure returns (uint16 count) {
        for (uint256 v; v < accepts.length; ++v) {
            // unchecked: at most MAX_VALIDATORS votes per update.
            unchecked {
                count += uint16((accepts[v] >> i) & 1);
            }
        }
    }

    /// Contributors: reputation up for an accepted update, down for a rejected one; the contributors' share of
    /// the budget split over the accepted updates by numSamples × reputation (as it stood before this round).
    function _settleContributors(uint256 taskId, uint256 n, uint256 outcome, uint256 share, Settlement[] memory out)
        private
    {
        mapping(uint256 => Entry) storage entries = _entries[taskId];
        uint256 total;
        for (uint256 i; i < n; ++i) {
            Entry memory e = entries[i];
            bool accepted = (outcome >> i) & 1 != 0;
            (uint32 old, uint32 rep) = _bumpRep(e.seat, Role.Contributor, accepted);
            // The reward field holds the weight until the total weight is known.
            uint256 weight;
            // unchecked: numSamples < 2^64 and reputation < 2^32, so a weight is below 2^96 and the sum of at
            // most MAX_UPDATES_PER_ROUND weights below 2^103.
            unchecked {
                weight = accepted ? uint256(e.numSamples) * old : 0;
                total += weight;
            }
            out[i] = Settlement({account: e.contributor, role: Role.Contributor, reputation: rep, reward: weight});
        }
        for (uint256 i; i < n; ++i) {
            if (out[i].reward != 0) out[i].reward = share * out[i].reward / total;
        }
    }

    /// Validators that voted: reputation down if any of their votes disagreed with the outcome, else up; the
    /// validators' share split by reputation over those that voted on every update, all with the outcome.
    /// Returns the number of settlements in `out` (contributors' included).
    function _settleValidators(uint256 n, uint256 outcome, Votes memory votes, uint256 share, Settlement[] memory out)
        private
        returns (uint256 count)
    {
        uint256 full = Bits.lowMask(n);
        uint256 total;
        count = n;
        for (uint256 v; v < votes.validators.length; ++v) {
            uint256 voted = votes.voted[v];
            if (voted == 0) continue;
            Seated memory val = votes.validators[v];
            bool agreed = (votes.accepts[v] ^ outcome) & voted == 0;
            (uint32 old, uint32 rep) = _bumpRep(val.seat, Role.Validator, agreed);
            // As for contributors, the reward field holds the weight first.
            uint256 weight = agreed && voted == full ? old : 0;
            total += weight;
            out[count++] = Settlement({account: val.member, role: Role.Validator, reputation: rep, reward: weight});
        }
        for (uint256 k = n; k < count; ++k) {
            if (out[k].reward != 0) out[k].reward = share * out[k].reward / total;
        }
    }

    // ─── Internals: helpers ─────────────────────────────────────────────────────────────────────────────────

    function _existingConfig(uint256 taskId) private view returns (Config storage cfg) {
        cfg = _configs[taskId];
        if (cfg.submissionWindow == 0) revert MeshLedger_UnknownTask(taskId);
    }

    function _liveRound(uint256 taskId, uint32 round) private view returns (Live memory live) {
        _existingConfig(taskId);
        live = _live[taskId];
        if (round != live.round) revert MeshLedger_RoundNotLive(taskId, round, live.round);
    }

    function _base(uint256 taskId, uint32 round) private view returns (bytes32) {
        return round == 1 ? _configs[taskId].genesisDigest : _aggregates[taskId][round - 1];
    }

    /// Submissions close at the end of the window, or earlier when the last contributor submitted.
    function _submissionEnd(uint32 window, Live memory live) private pure returns (uint64) {
        return live.closedAt != 0 ? live.closedAt : uint64(live.openedAt) + window;
    }

    function _ruleFits(uint8 rule, uint32 ruleParam) private pure returns (bool) {
        // forge-lint: disable-next-line(unsafe-typecast) the low 16 bits are the rule's argument by definition
        uint16 argument = uint16(ruleParam);
        if (rule == RULE_FEDAVG || rule == RULE_MEDIAN) return argument == 0;
        if (rule == RULE_TRIMMED_MEAN) return argument >= 1 && argument < 5_000;
        return rule == RULE_MULTI_KRUM;
    }

    function _repShift(uint16 seat, Role role) private pure returns (uint256) {
        return ((uint256(seat) & 3) * 2 + uint256(role)) * 32;
    }

    function _rep(uint16 seat, Role role) private view returns (uint32) {
        return uint32(_reputations[seat >> SEATS_PER_REP_WORD_LOG2] >> _repShift(seat, role));
    }

    /// Moves a reputation one step up (`up`) or down, within [REPUTATION_MIN, REPUTATION_MAX]; the step
    /// depends on the role. Returns the value before and after.
    function _bumpRep(uint16 seat, Role role, bool up) private returns (uint32 old, uint32 rep) {
        uint256 word = seat >> SEATS_PER_REP_WORD_LOG2;
        uint256 shift = _repShift(seat, role);
        uint256 packed = _reputations[word];
        // forge-lint: disable-next-line(unsafe-typecast) reputations are 32-bit lanes of the word
        old = uint32(packed >> shift);
        bool contributor = role == Role.Contributor;
        rep = up
            ? _raise(old, contributor ? CONTRIBUTOR_GAIN : VALIDATOR_GAIN)
            : _lower(old, contributor ? CONTRIBUTOR_LOSS : VALIDATOR_LOSS);
        if (rep != old) {
            _reputations[word] = (packed & ~(uint256(type(uint32).max) << shift)) | (uint256(rep) << shift);
        }
    }

    function _setRep(uint16 seat, Role role, uint32 rep) private {
        uint256 word = seat >> SEATS_PER_REP_WORD_LOG2;
        uint256 shift = _repShift(seat, role);
        _reputations[word] = (_reputations[word] & ~(uint256(type(uint32).max) << shift)) | (uint256(rep) << shift);
    }

    function _raise(uint32 rep, uint32 step) private pure returns (uint32) {
        return rep + step >= REPUTATION_MAX ? REPUTATION_MAX : rep + step;
    }

    function _lower(uint32 rep, uint32 step) private pure returns (uint32) {
        return rep <= REPUTATION_MIN + step ? REPUTATION_MIN : rep - step;
    }
}
