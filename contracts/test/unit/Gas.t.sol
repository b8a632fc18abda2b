// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

import {IMeshLedger} from "../../src/interfaces/IMeshLedger.sol";
import {Fixture} from "../utils/Fixture.sol";

/// @notice The hot operations of the gas targets on a 16-update round with 4 validators, in a task's first round
/// and in its second (steady state), for the snapshot (.gas-snapshot) so that gas changes show in review. A forge
/// test is a single transaction: slots the unmetered setup touched are warm and intrinsic gas is not counted, so
/// these figures track changes; what transactions really pay is measured on anvil (docs/contracts.md, "Gas").
contract GasTest is Fixture {
    function setUp() public override {
        _deploy(16, 4);
    }

    function _relayedBatch() internal view returns (IMeshLedger.SignedSubmission[] memory subs) {
        subs = new IMeshLedger.SignedSubmission[](16);
        uint32 round = _round();
        for (uint256 i; i < 16; ++i) {
            subs[i] = _signedWith(
                contributorKeys[i],
                contributors[i],
                round,
                keccak256(abi.encode(round, i)),
                1_000 + uint64(i),
                ledger.nonces(contributors[i]),
                uint64(block.timestamp + 1 hours)
            );
        }
    }

    function _toSteadyState() internal {
        vm.pauseGasMetering();
        _playRound(5_000);
        vm.resumeGasMetering();
    }

    /// Scores that differ per validator and update, so that the median and the distances do real work.
    function _rows() internal pure returns (int256[][] memory rows) {
        rows = new int256[][](4);
        for (uint256 v; v < 4; ++v) {
            rows[v] = new int256[](16);
            for (uint256 i; i < 16; ++i) {
                rows[v][i] = int256((i * 613 + v * 1_777) % 12_000) - 2_000;
            }
        }
    }

    function _commitAndRevealOne() internal {
        vm.pauseGasMetering();
        _submitAll();
        int256[] memory row = _rows()[0];
        bytes32 c = _commitment(validatorAddrs[0], row);
        bytes memory encoded = _encode(row);
        bytes memory reasons = _reasonsFor(row);
        uint32 round = _round();
        vm.resumeGasMetering();
        vm.prank(validatorAddrs[0]);
        ledger.commitScores(taskId, round, c);
        vm.pauseGasMetering();
        _toReveal();
        vm.resumeGasMetering();
        vm.prank(validatorAddrs[0]);
        ledger.revealScores(taskId, round, encoded, reasons, SALT);
    }

    function _finalizeScored() internal {
        vm.pauseGasMetering();
        _submitAll();
        _scoreRound(_rows());
        uint32 round = _round();
        bytes32 aggregate = _aggregate(round);
        vm.resumeGasMetering();
        vm.prank(aggregator);
        ledger.finalizeRound(taskId, round, aggregate);
    }

    function test_gas_submitUpdate_firstRound() public {
        _submit(0);
    }

    function test_gas_submitUpdate_steadyState() public {
        _toSteadyState();
        _submit(0);
    }

    function test_gas_submitUpdatesFor16_firstRound() public {
        vm.pauseGasMetering();
        IMeshLedger.SignedSubmission[] memory subs = _relayedBatch();
        vm.resumeGasMetering();
        ledger.submitUpdatesFor(taskId, _round(), subs);
    }

    function test_gas_submitUpdatesFor16_steadyState() public {
        _toSteadyState();
        vm.pauseGasMetering();
        IMeshLedger.SignedSubmission[] memory subs = _relayedBatch();
        vm.resumeGasMetering();
        ledger.submitUpdatesFor(taskId, _round(), subs);
    }

    function test_gas_commitReveal16_firstRound() public {
        _commitAndRevealOne();
    }

    function test_gas_commitReveal16_steadyState() public {
        _toSteadyState();
        _commitAndRevealOne();
    }

    function test_gas_finalizeRound16x4_firstRound() public {
        _finalizeScored();
    }

    function test_gas_finalizeRound16x4_steadyState() public {
        _toSteadyState();
        _finalizeScored();
    }

    function test_gas_claimRewards() public {
        _toSteadyState();
        vm.prank(contributors[0]);
        ledger.claimRewards();
    }
}
