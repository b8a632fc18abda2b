// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

/// @title Bits
/// @notice Bitmap helpers for the ledger's per-round sets (updates voted on, accepted, submitted).
library Bits {
    uint256 private constant M1 = 0x5555555555555555555555555555555555555555555555555555555555555555;
    uint256 private constant M2 = 0x3333333333333333333333333333333333333333333333333333333333333333;
    uint256 private constant M4 = 0x0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f;
    uint256 private constant M8 = 0x00ff00ff00ff00ff00ff00ff00ff00ff00ff00ff00ff00ff00ff00ff00ff00ff;
    uint256 private constant H16 = 0x0001000100010001000100010001000100010001000100010001000100010001;

    /// @notice Number of set bits of `x` (SWAR: constant cost, no loop).
    function popcount(uint256 x) internal pure returns (uint256) {
        // unchecked: every step keeps each lane within its width (2, 4, 8, 16 bits), and the final multiply
        // sums the 16 lanes into the top lane, which holds at most 256 < 2^16; overflow above it is discarded.
        unchecked {
            x = x - ((x >> 1) & M1);
            x = (x & M2) + ((x >> 2) & M2);
            x = (x + (x >> 4)) & M4;
            x = (x & M8) + ((x >> 8) & M8);
            return (x * H16) >> 240;
        }
    }

    /// @notice Bits set where at least `threshold` of `bitmaps` have the bit set, for every position at once.
    /// @dev Bit-sliced counting: `planes[k]` holds bit k of every position's running count, and adding a
    /// bitmap is a ripple-carry addition done on all 256 positions in parallel; then each position's count is
    /// compared with `threshold` from the most significant plane down. Costs O(len · log len) word operations
    /// instead of one loop per position. Requires `bitmaps.length` < 2^8.
    function atLeast(uint256[] memory bitmaps, uint256 threshold) internal pure returns (uint256 result) {
        if (threshold == 0) return type(uint256).max;
        if (threshold > bitmaps.length) return 0;
        uint256[8] memory planes;
        for (uint256 v; v < bitmaps.length; ++v) {
            uint256 carry = bitmaps[v];
            for (uint256 k; carry != 0; ++k) {
                uint256 next = planes[k] & carry;
                planes[k] ^= carry;
                carry = next;
            }
        }
        // Compare count ≥ threshold bitwise: `greater` collects positions already known to be larger, `equal`
        // those whose higher bits so far all match the threshold's.
        uint256 greater;
        uint256 equal = type(uint256).max;
        for (uint256 k = 8; k > 0; --k) {
            uint256 plane = planes[k - 1];
            if ((threshold >> (k - 1)) & 1 == 1) {
                equal &= plane;
            } else {
                greater |= equal & plane;
                equal &= ~plane;
            }
        }
        return greater | equal;
    }

    /// @notice A bitmap with the lowest `n` bits set (`n` ≤ 255).
    function lowMask(uint256 n) internal pure returns (uint256) {
        return (uint256(1) << n) - 1;
    }
}
