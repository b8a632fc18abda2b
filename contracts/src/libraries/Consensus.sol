// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

/// @title Consensus
/// @notice The arithmetic of protocol v2 (docs/protocol.md R4, R5): score words, the lower weighted median, the
/// validators' agreement and the reputation steps. Pure functions, so that the Python mirror (ledger/consensus.py)
/// can be checked against them rule by rule.
library Consensus {
    /// Fixed point of a score: 10_000 = 1.0.
    int256 internal constant SCORE_ONE = 10_000;
    /// The least reference distance m of a round (R5): below it, honest validators that happen to agree closely
    /// would make the tolerance so tight that ordinary noise costs reputation.
    uint256 internal constant DISTANCE_FLOOR = 200;
    /// A revealed validator is within tolerance when its distance is at most this many times the reference m.
    uint256 internal constant DISTANCE_TOLERANCE = 3;
    /// Scores are stored 16 per word, XORed with this so that every stored lane is nonzero (a score in
    /// [-10_000, 10_000] never has the bit pattern 0x8000): a reused slot then always costs a nonzero-to-nonzero
    /// store, never the 20,000 gas of filling a zero slot.
    uint256 internal constant FLIP = 0x8000800080008000800080008000800080008000800080008000800080008000;

    /// @notice Score `i` (0-based) of the decoded (un-flipped) word that holds it: lane i % 16, big-endian.
    function lane(uint256 word, uint256 i) internal pure returns (int256 s) {
        // A 16-bit lane read as two's complement by design: shift it to the top, then arithmetic-shift it down.
        assembly ("memory-safe") {
            s := sar(240, shl(shl(4, and(i, 15)), word))
        }
    }

    /// @notice |s - c| capped at SCORE_ONE: how far one score is from the consensus.
    function cappedDistance(int256 s, int256 c) internal pure returns (uint256 d) {
        // unchecked: both are int16 values, their difference fits easily.
        unchecked {
            d = s > c ? uint256(s - c) : uint256(c - s);
        }
        if (d > uint256(SCORE_ONE)) d = uint256(SCORE_ONE);
    }

    /// @notice Agreement A in basis points from the mean distance d and the round's tolerance r:
    /// max(0, 1 - d / r), rounded down.
    function agreement(uint256 distance, uint256 r) internal pure returns (uint256) {
        return distance >= r ? 0 : (r - distance) * 10_000 / r;
    }

    /// @notice The round's tolerance r = DISTANCE_TOLERANCE × max(DISTANCE_FLOOR, m), m the UPPER weighted median
    /// of the revealed members' mean distances (`revealed` bit k: member k revealed; others are ignored): the
    /// largest candidate x with 2 × weight(d ≥ x) ≥ total. Upper, not lower: when the consensus is one revealed
    /// member's own score (a member absent) that member's distance is 0, and the lower median of {0, d} would
    /// be 0 and leave the other honest member outside the floor's tolerance (docs/protocol.md R5).
    /// @dev Pairwise (a set holds at most 32 members).
    function tolerance(uint256[] memory distance, uint256[] memory weights, uint256 revealed)
        internal
        pure
        returns (uint256)
    {
        uint256 total;
        for (uint256 k; k < distance.length; ++k) {
            if ((revealed >> k) & 1 != 0) total += weights[k];
        }
        uint256 m;
        for (uint256 k; k < distance.length; ++k) {
            if ((revealed >> k) & 1 == 0 || distance[k] <= m) continue;
            uint256 cumulative;
            for (uint256 j; j < distance.length; ++j) {
                if ((revealed >> j) & 1 != 0 && distance[j] >= distance[k]) cumulative += weights[j];
            }
            if (2 * cumulative >= total) m = distance[k];
        }
        if (m < DISTANCE_FLOOR) m = DISTANCE_FLOOR;
        return DISTANCE_TOLERANCE * m;
    }

    /// @notice `rep` + `step`, capped at `max`.
    function raise(uint16 rep, uint256 step, uint16 max) internal pure returns (uint16) {
        uint256 r = uint256(rep) + step;
        // forge-lint: disable-next-line(unsafe-typecast) r < max ≤ 2^16 in the second branch
        return r >= max ? max : uint16(r);
    }

    /// @notice `rep` - `step`, floored at `min`.
    function lower(uint16 rep, uint256 step, uint16 min) internal pure returns (uint16) {
        // forge-lint: disable-next-line(unsafe-typecast) rep - step > min ≥ 0 in the second branch
        return uint256(rep) <= uint256(min) + step ? min : uint16(uint256(rep) - step);
    }

    /// @notice The lower weighted median of `values[0..count)` with `weights` (reference implementation, for
    /// tests: the ledger computes the same pairwise in RoundSettlement): the smallest value v such that the
    /// weight of the values ≤ v, doubled, is at least the total weight. 0 when the total weight is 0.
    function lowerWeightedMedian(int256[] memory values, uint256[] memory weights) internal pure returns (int256) {
        uint256 total;
        for (uint256 j; j < values.length; ++j) {
            total += weights[j];
        }
        if (total == 0) return 0;
        int256 best = type(int256).max;
        for (uint256 k; k < values.length; ++k) {
            uint256 cumulative;
            for (uint256 j; j < values.length; ++j) {
                if (values[j] <= values[k]) cumulative += weights[j];
            }
            if (2 * cumulative >= total && values[k] < best) best = values[k];
        }
        return best;
    }
}
