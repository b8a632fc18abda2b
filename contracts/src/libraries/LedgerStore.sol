// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

// The storage of MeshLedger, shared with its external library RoundSettlement (which runs by DELEGATECALL on the
// ledger's storage and so must see the very same layout). See MeshLedger for why each slot is shaped as it is.

/// One slot per address, holding everything a hot path or a settlement touches for it: the role flags (mirroring
/// AccessControl, kept in step by the _grantRole/_revokeRole overrides), nonce, seat, both reputations and the
/// rewards accrued. Finalization settles a participant with one read and one write of this slot — already
/// nonzero for every member (its seat and flags), so a task's first round costs what every round costs.
struct Account {
    uint48 nonce; // one per relayed submission: 2^48 of them will never be signed
    /// The last consensus settled for this account's update, plus 10_001 (0: none yet): the public record a lazy
    /// validator could copy, which the validators' pay is measured against (docs/protocol.md R5, anti-lazy).
    uint16 lastConsensus;
    uint16 seat;
    uint8 flags;
    uint16 contributorReputation; // ≤ REPUTATION_MAX = 10_000; 0 = never a contributor
    uint16 validatorReputation; // idem for the validator role
    uint128 accrued;
}

/// A task's parameters; the first slot holds everything the hot paths read.
struct Config {
    uint32 submissionWindow; // nonzero for every created task: doubles as the existence check
    uint32 commitWindow;
    uint32 revealWindow;
    uint32 finalizeGrace;
    uint64 maxSamples;
    uint32 ruleParam;
    uint16 quorum;
    uint8 rule;
    uint128 rewardPerRound;
    uint24 listVersion; // the validator list version the task's live set was frozen from
    bytes32 specDigest;
    bytes32 genesisDigest;
}

/// The live round of a task, in one slot. Times are ledger time.
struct Live {
    uint32 round;
    uint40 openedAt;
    uint40 closedAt; // nonzero once submissions closed early (every contributor submitted, or round full)
    uint40 commitClosedAt; // nonzero once every set member committed
    uint8 submissionCount; // ≤ MAX_UPDATES_PER_ROUND = 112
    uint8 validatorCount; // size of the round's validator set
    uint32 committed; // bit k: set member k committed
    uint32 revealed; // bit k: set member k revealed
    uint24 setEpoch; // which composition of the task's validator set this round uses (see Position)
}

/// Update `index` of the task's live round (the slot is reused by the same index of later rounds).
struct Entry {
    address contributor;
    uint64 numSamples;
}

/// Where a validator sits in a task's validator set: member `index` of set composition `epoch`. Written only
/// when the composition changes (a grant or revocation between rounds), so a round's opening does not rewrite
/// one slot per validator; a position of an older composition does not match the live round's epoch.
struct Position {
    uint24 epoch;
    uint8 index;
}

/// Ledger-wide counters and the pause clock (wall times; 0 = none), in one slot every hot path reads.
struct Globals {
    uint64 taskCount;
    uint32 contributorCount;
    uint16 lastSeat;
    uint40 pausedAt; // wall time the current (or lapsed, not yet folded) pause began
    uint40 pausedTotal; // seconds of ended pauses, folded
    uint40 lastPauseEnd; // wall time the last folded pause ended
    uint24 listVersion; // bumped by every change of the validator list (grant or revocation)
}

/// The live round's times, in ledger time.
struct Times {
    uint64 now_;
    uint64 submissionEnd;
    uint64 commitEnd;
    uint64 revealEnd;
    uint64 graceEnd;
}

/// Everything MeshLedger stores beyond AccessControl and EIP712, in one struct so that RoundSettlement gets it as
/// one storage pointer.
struct LedgerStore {
    Globals globals;
    address[] validatorList;
    mapping(address validator => uint256 position) validatorPosition; // 1-based; 0 = not listed
    mapping(address who => Account) accounts;
    mapping(uint256 taskId => Config) configs;
    mapping(uint256 taskId => Live) live;
    mapping(uint256 taskId => mapping(uint256 word => uint256 seats)) seatWords;
    mapping(uint256 taskId => mapping(uint256 index => Entry)) entries;
    mapping(uint256 taskId => mapping(uint256 k => address)) members; // the live round's set, member k
    mapping(uint256 taskId => mapping(uint256 word => uint256 weights)) weights; // 16 per word, 16 bits each
    mapping(uint256 taskId => mapping(address validator => Position)) positions;
    mapping(uint256 taskId => mapping(uint256 key => uint256 word)) scoreWords;
    mapping(uint256 taskId => mapping(uint32 round => bytes32 digest)) aggregates;
    mapping(bytes32 change => uint64 executeAfter) pendingChanges;
}
