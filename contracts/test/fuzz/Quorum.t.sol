// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

import {IMeshLedger} from "../../src/interfaces/IMeshLedger.sol";
import {Bits} from "../../src/libraries/Bits.sol";
import {Fixture} from "../utils/Fixture.sol";

/// The accepted set against the quorum outcome, rewards against the budget, and the bitmap helpers.
contract QuorumFuzzTest is Fixture {
    uint256 internal constant N = 6;

    function setUp() public override {
        _deploy(N, 5);
    }

    /// Reference outcome: count accept votes per update, one by one.
    function _expected(uint256[5] memory accepts, uint256 quorum) internal pure returns (uint256 outcome) {
        for (uint256 i; i < N; ++i) {
            uint256 count;
            for (uint256 v; v < 5; ++v) {
                count += (accepts[v] >> i) & 1;
            }
            if (count >= quorum) outcome |= uint256(1) << i;
        }
    }

    function testFuzz_finalizeRound_acceptsExactlyTheQuorumOutcome(uint16 quorum, uint256 seed, uint256 wrong) public {
        quorum = uint16(bound(quorum, 1, 6));
        IMeshLedger.TaskParams memory p = _params();
        p.quorum = quorum;
        vm.prank(admin);
        taskId = ledger.createTask(p);
        _submitAll();
        uint256[5] memory accepts;
        for (uint256 v; v < 5; ++v) {
            accepts[v] = uint256(keccak256(abi.encode(seed, v))) & 0x3f;
            _voteAll(v, accepts[v]);
        }
        uint256 outcome = _expected(accepts, quorum);
        (uint256 tallied,) = ledger.tally(taskId, 1);
        assertEq(tallied, outcome, "tally view = reference");

        wrong = bound(wrong, 0, 0x7f);
        if (wrong != outcome) {
            bytes32 aggWrong = wrong == 0 ? GENESIS : _aggregate(1);
            vm.prank(aggregator);
            vm.expectRevert(
                abi.encodeWithSelector(IMeshLedger.MeshLedger_AcceptedSetMismatch.selector, taskId, 1, outcome, wrong)
            );
            ledger.finalizeRound(taskId, 1, aggWrong, wrong);
        }
        _finalize(outcome == 0 ? GENESIS : _aggregate(1), outcome);
        assertEq(_round(), 2, "finalized with the outcome");
    }

    function testFuzz_finalizeRound_mintsAtMostTheBudget(uint128 budget, uint256 seed) public {
        IMeshLedger.TaskParams memory p = _params();
        p.rewardPerRound = uint128(bound(budget, 0, 1e30));
        vm.prank(admin);
        taskId = ledger.createTask(p);
        for (uint256 i; i < N; ++i) {
            uint64 samples = uint64(bound(uint256(keccak256(abi.encode(seed, "s", i))), 1, 1e12));
            _submitAs(contributors[i], 1, _digest(i), samples);
        }
        uint256 accepts = uint256(keccak256(abi.encode(seed))) & 0x3f;
        for (uint256 v; v < 5; ++v) {
            _voteAll(v, accepts);
        }
        _finalize(accepts == 0 ? GENESIS : _aggregate(1), accepts);
        uint256 minted = token.totalSupply();
        assertLe(minted, p.rewardPerRound, "never more than the budget");
        if (accepts != 0 && p.rewardPerRound >= 1e6) {
            // Rounding loses less than one base unit per recipient (6 contributors + 5 validators).
            assertGe(minted + 11, p.rewardPerRound, "everything but dust minted");
        }
    }

    function testFuzz_atLeast_matchesCountingPerPosition(uint256[7] memory raw, uint8 len, uint256 threshold)
        public
        pure
    {
        len = uint8(bound(len, 0, 7));
        threshold = bound(threshold, 0, 9);
        uint256[] memory maps = new uint256[](len);
        for (uint256 v; v < len; ++v) {
            maps[v] = raw[v];
        }
        uint256 got = Bits.atLeast(maps, threshold);
        for (uint256 i; i < 256; i += 7) {
            uint256 count;
            for (uint256 v; v < len; ++v) {
                count += (maps[v] >> i) & 1;
            }
            assertEq((got >> i) & 1 == 1, count >= threshold, "position agrees with counting");
        }
    }

    function testFuzz_popcount_matchesCounting(uint256 x) public pure {
        uint256 count;
        for (uint256 y = x; y != 0; y &= y - 1) {
            ++count;
        }
        assertEq(Bits.popcount(x), count, "popcount");
    }
}
