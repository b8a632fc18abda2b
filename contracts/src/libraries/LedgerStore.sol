// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

import {IMeshLedger} from "../interfaces/IMeshLedger.sol";

// The storage of MeshLedger, shared with its external library RoundSettlement (which runs by DELEGATECALL on the
// ledger's storage and so must see the very same layout). See MeshLedger for why each slot is shaped as it is.

/// One slot per address: the role flags mirror AccessControl so that a hot path reads roles, seat and
/// nonce in one load (kept in step by the _grantRole/_revokeRole overrides); rewards accrue here too.
struct Account {
    uint64 nonce;
    uint16 seat;
    uint8 flags;
    uint128 accrued;
}

/// A validator in the list the next round's set is frozen from.
struct Seated {
    address member;
    uint16 seat;
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
    bytes32 specDigest;
    bytes32 genesisDigest;
}

/// The live round of a task. Times are ledger time.
struct Live {
    uint32 round;
    uint40 openedAt;
    uint40 closedAt; // nonzero once submissions closed early (every contributor submitted, or round full)
    uint40 commitClosedAt; // nonzero once every set member committed
    uint16 submissionCount;
    uint8 validatorCount;
    uint32 committed; // bit k: set member k committed
    uint32 revealed; // bit k: set member k revealed
}

/// Update `index` of the task's live round (the slot is reused by the same index of later rounds).
struct Entry {
    address contributor;
    uint64 numSamples;
    uint16 seat;
}

/// Member k of the live round's validator set, with its weight (validator reputation at round open).
struct Member {
    address member;
    uint16 seat;
    uint16 weight;
}

/// Where a validator sits in a task's live set: valid only when `round` is the live round.
struct Position {
    uint32 round;
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
}

/// The live round's times, in ledger time.
struct Times {
    uint64 now_;
    uint64 submissionEnd;
    uint64 commitEnd;
    uint64 revealEnd;
    uint64 graceEnd;
}

/// The round's scores as finalization (and {tally}) sees them.
struct Tally {
    Member[] members;
    uint256[] words; // decoded score words, member k's at [k·wpm, (k+1)·wpm), zero for unrevealed members
    uint256 wpm; // words per member
    int16[] consensus;
    uint256 revealed;
    uint256 revealCount;
    uint256 accepted;
}

/// Everything MeshLedger stores beyond AccessControl and EIP712, in one struct so that RoundSettlement gets it as
/// one storage pointer.
struct LedgerStore {
    Globals globals;
    Seated[] validatorList;
    mapping(address validator => uint256 position) validatorPosition; // 1-based; 0 = not listed
    mapping(address who => Account) accounts;
    mapping(uint256 word => uint256 reputations) reputations;
    mapping(uint256 taskId => Config) configs;
    mapping(uint256 taskId => Live) live;
    mapping(uint256 taskId => mapping(uint256 word => uint256 seats)) seatWords;
    mapping(uint256 taskId => mapping(uint256 index => Entry)) entries;
    mapping(uint256 taskId => mapping(uint256 k => Member)) members;
    mapping(uint256 taskId => mapping(address validator => Position)) positions;
    mapping(uint256 taskId => mapping(uint256 key => uint256 word)) scoreWords;
    mapping(uint256 taskId => mapping(uint32 round => bytes32 digest)) aggregates;
    mapping(bytes32 change => uint64 executeAfter) pendingChanges;
}

/// Reputations: 32-bit values, four seats (each a contributor and a validator value) per slot.
library Reputations {
    function _shift(uint16 seat, IMeshLedger.Role role) private pure returns (uint256) {
        return ((uint256(seat) & 3) * 2 + uint256(role)) * 32;
    }

    function get(LedgerStore storage s, uint16 seat, IMeshLedger.Role role) internal view returns (uint32) {
        // forge-lint: disable-next-line(unsafe-typecast) reputations are 32-bit lanes of the word
        return uint32(s.reputations[seat >> 2] >> _shift(seat, role));
    }

    function set(LedgerStore storage s, uint16 seat, IMeshLedger.Role role, uint32 rep) internal {
        uint256 word = seat >> 2;
        uint256 shift = _shift(seat, role);
        s.reputations[word] = (s.reputations[word] & ~(uint256(type(uint32).max) << shift)) | (uint256(rep) << shift);
    }
}
