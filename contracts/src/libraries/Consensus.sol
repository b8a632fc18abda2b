// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

/// @title Consensus
/// @notice The arithmetic of protocol v2 (docs/protocol.md R4, R5): score words, the lower weighted median, the
/// validators' agreement and the reputation steps. Pure functions, so that the Python mirror (ledger/consensus.py)
/// can be checked against them rule by rule.
library Consensus {
    /// Fixed point of a score: 10_000 = 1.0.
    int256 internal constant SCORE_ONE = 10_000;
    /// A validator's distance at which its agreement reaches 0.
    uint256 internal constant DISTANCE_SCALE = 5_000;
    /// Scores are stored 16 per word, XORed with this so that every stored lane is nonzero (a score in
    /// [-10_000, 10_000] never has the bit pattern 0x8000): a reused slot then always costs a nonzero-to-nonzero
    /// store, never the 20,000 gas of filling a zero slot.
    uint256 internal constant FLIP = 0x8000800080008000800080008000800080008000800080008000800080008000;

    /// @notice Score `i` (0-based) of the decoded (un-flipped) word that holds it: lane i % 16, big-endian.
    function lane(uint256 word, uint256 i) internal pure returns (int256) {
        // forge-lint: disable-next-line(unsafe-typecast) a 16-bit lane read as two's complement by design
        return int256(int16(uint16(word >> (240 - 16 * (i & 15)))));
    }

    /// @notice The lower weighted median of `values[0..count)` with `weights`: the smallest value v such that the
    /// weight of the values ≤ v, doubled, is at least `total`. Sorts both arrays in place (insertion sort: the
    /// arrays hold at most MAX_VALIDATORS + 1 entries). Returns 0 when `total` is 0.
    function lowerWeightedMedian(int256[] memory values, uint256[] memory weights, uint256 count, uint256 total)
        internal
        pure
        returns (int256)
    {
        if (total == 0) return 0;
        for (uint256 j = 1; j < count; ++j) {
            int256 v = values[j];
            uint256 w = weights[j];
            uint256 h = j;
            while (h > 0 && values[h - 1] > v) {
                values[h] = values[h - 1];
                weights[h] = weights[h - 1];
                --h;
            }
            values[h] = v;
            weights[h] = w;
        }
        uint256 cumulative;
        for (uint256 j; j < count; ++j) {
            cumulative += weights[j];
            if (2 * cumulative >= total) return values[j];
        }
        // Unreachable when the weights add up to `total`; the largest value is the median of what was given.
        return count == 0 ? int256(0) : values[count - 1];
    }

    /// @notice |s - c| capped at SCORE_ONE: how far one score is from the consensus.
    function cappedDistance(int256 s, int256 c) internal pure returns (uint256) {
        uint256 d = s > c ? uint256(s - c) : uint256(c - s);
        return d > uint256(SCORE_ONE) ? uint256(SCORE_ONE) : d;
    }

    /// @notice Agreement A in basis points from the mean distance d: max(0, 1 - d / DISTANCE_SCALE) = 10_000 - 2d.
    function agreement(uint256 distance) internal pure returns (uint256) {
        return distance >= DISTANCE_SCALE ? 0 : 10_000 - 2 * distance;
    }

    /// @notice `rep` + `step`, capped at `max`.
    function raise(uint32 rep, uint256 step, uint32 max) internal pure returns (uint32) {
        uint256 r = uint256(rep) + step;
        // forge-lint: disable-next-line(unsafe-typecast) r ≤ max < 2^32 after the cap
        return r >= max ? max : uint32(r);
    }

    /// @notice `rep` - `step`, floored at `min`.
    function lower(uint32 rep, uint256 step, uint32 min) internal pure returns (uint32) {
        // forge-lint: disable-next-line(unsafe-typecast) rep - step > min ≥ 0 in the second branch
        return uint256(rep) <= uint256(min) + step ? min : uint32(uint256(rep) - step);
    }
}
