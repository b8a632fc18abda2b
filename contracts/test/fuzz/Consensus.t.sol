// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

import {Consensus} from "../../src/libraries/Consensus.sol";
import {Fixture} from "../utils/Fixture.sol";

/// The consensus (R4) under fuzzed scores, weights and reveals: the ledger's median equals the definition, and the
/// Byzantine bound holds.
contract ConsensusFuzzTest is Fixture {
    uint256 internal constant V = 7;
    // MeshLedger's storage: the LedgerStore struct starts at slot 3 (`forge inspect MeshLedger storageLayout`),
    // its `weights` mapping is its 10th field.
    uint256 internal constant WEIGHTS_SLOT = 3 + 9;

    function setUp() public override {
        _deploy(3, V);
    }

    function _score(uint256 seed, uint256 salt) internal pure returns (int256) {
        return int256(bound(uint256(keccak256(abi.encode(seed, salt))), 0, 20_000)) - 10_000;
    }

    /// Sets the frozen weights of the live round's members (as if their reputations had drifted apart).
    function _setWeights(uint256[] memory w) internal {
        uint256 word;
        for (uint256 k; k < w.length; ++k) {
            word |= w[k] << (16 * k);
        }
        bytes32 slot = keccak256(abi.encode(uint256(0), keccak256(abi.encode(taskId, WEIGHTS_SLOT))));
        vm.store(address(ledger), slot, bytes32(word));
        (, uint16[] memory got,,) = ledger.validatorSet(taskId, 1);
        for (uint256 k; k < w.length; ++k) {
            assertEq(got[k], w[k], "weights in place");
        }
    }

    /// The scores of update i by every member (absent members: no row).
    function _play(int256[][] memory rows) internal returns (int16[] memory consensus) {
        _scoreRound(rows);
        (consensus,) = ledger.tally(taskId, 1);
    }

    function testFuzz_consensus_isTheLowerWeightedMedian(uint256 seed, uint256 revealMask, uint256[V] memory rawWeights)
        public
    {
        _submitAll();
        uint256[] memory w = new uint256[](V);
        for (uint256 k; k < V; ++k) {
            w[k] = bound(rawWeights[k], 100, 10_000);
        }
        _setWeights(w);
        int256[][] memory rows = new int256[][](V);
        for (uint256 k; k < V; ++k) {
            if ((revealMask >> k) & 1 == 0) continue;
            rows[k] = new int256[](3);
            for (uint256 i; i < 3; ++i) {
                rows[k][i] = _score(seed, k * 3 + i);
                if (rows[k][i] == -10_000) rows[k][i] = -9_999;
            }
        }
        int16[] memory got = _play(rows);
        for (uint256 i; i < 3; ++i) {
            int256[] memory values = new int256[](V);
            for (uint256 k; k < V; ++k) {
                values[k] = rows[k].length == 0 ? int256(0) : rows[k][i]; // absent counts as 0
            }
            assertEq(int256(got[i]), Consensus.lowerWeightedMedian(values, w), "the definition");
        }
    }

    /// R4: with Byzantine weight B < W/2 (here: fewer than half of equally weighted validators), if every honest
    /// validator scores ≤ 0 or is absent the consensus is ≤ 0; if every honest validator revealed a score > 0 the
    /// consensus is at least the smallest honest score — whatever the Byzantine validators reveal or withhold.
    function testFuzz_consensus_byzantineMinorityCannotFlipTheOutcome(
        uint256 seed,
        uint8 byzantine,
        bool honestPositive,
        uint256 absentMask
    ) public {
        uint256 b = bound(byzantine, 0, (V - 1) / 2); // B < W/2
        _submitAll();
        int256[][] memory rows = new int256[][](V);
        int256[] memory minHonest = new int256[](3);
        for (uint256 i; i < 3; ++i) {
            minHonest[i] = type(int256).max;
        }
        for (uint256 k; k < V; ++k) {
            bool isByzantine = k < b;
            // Byzantine validators reveal anything or stay away; honest ones stay away only when scoring ≤ 0.
            if (isByzantine && (absentMask >> k) & 1 == 1) continue;
            if (!isByzantine && !honestPositive && (absentMask >> k) & 1 == 1) continue;
            rows[k] = new int256[](3);
            for (uint256 i; i < 3; ++i) {
                int256 s = _score(seed, k * 3 + i);
                if (!isByzantine) {
                    s = honestPositive ? int256(bound(uint256(s + 10_000), 1, 10_000)) : -int256(bound(uint256(s + 10_000), 0, 10_000));
                    if (s < minHonest[i]) minHonest[i] = s;
                } else if (s == -10_000) {
                    s = -9_999;
                }
                if (s == -10_000) s = -9_999;
                rows[k][i] = s;
            }
        }
        int16[] memory got = _play(rows);
        for (uint256 i; i < 3; ++i) {
            if (honestPositive) {
                assertTrue(int256(got[i]) >= minHonest[i], "at least the smallest honest score");
                assertTrue(got[i] > 0, "accepted on the honest say");
            } else {
                assertTrue(got[i] <= 0, "no update the honest validators reject is accepted");
            }
        }
    }

    function testFuzz_lowerWeightedMedian_liesBetweenValues(int16[5] memory raw, uint16[5] memory rawWeights)
        public
        pure
    {
        int256[] memory values = new int256[](5);
        uint256[] memory w = new uint256[](5);
        int256 lo = type(int256).max;
        int256 hi = type(int256).min;
        for (uint256 k; k < 5; ++k) {
            values[k] = raw[k];
            w[k] = uint256(rawWeights[k]) + 1;
            if (values[k] < lo) lo = values[k];
            if (values[k] > hi) hi = values[k];
        }
        int256 m = Consensus.lowerWeightedMedian(values, w);
        assertTrue(m >= lo && m <= hi, "one of the values");
    }
}
