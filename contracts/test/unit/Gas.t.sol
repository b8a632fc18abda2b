// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

import {IMeshLedger} from "../../src/interfaces/IMeshLedger.sol";
import {Fixture} from "../utils/Fixture.sol";

/// @notice The four operations of the gas targets on a 16-update round with 3 validators, in a task's first round
/// and in its second (steady state), for the snapshot (.gas-snapshot) so that gas changes show in review. A forge
/// test is a single transaction, so slots the setup part touched are warm and intrinsic gas is not counted: these
/// figures track changes; benchmarks/gas.py measures what transactions really pay, on anvil.
contract GasTest is Fixture {
    function setUp() public override {
        _deploy(16, 3);
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
        _playRound(0);
        vm.resumeGasMetering();
    }

    function _votesFromAllButLast(uint256 accepts) internal {
        for (uint256 v; v + 1 < validatorAddrs.length; ++v) {
            _voteAll(v, accepts);
        }
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

    function test_gas_voteBatch16_firstRound() public {
        vm.pauseGasMetering();
        _submitAll();
        vm.resumeGasMetering();
        _voteAll(0, type(uint256).max);
    }

    function test_gas_voteBatch16_steadyState() public {
        _toSteadyState();
        vm.pauseGasMetering();
        _submitAll();
        vm.resumeGasMetering();
        _voteAll(0, type(uint256).max);
    }

    function test_gas_finalizeRound16_firstRound() public {
        vm.pauseGasMetering();
        _submitAll();
        for (uint256 v; v < 3; ++v) {
            _voteAll(v, type(uint256).max);
        }
        vm.resumeGasMetering();
        _finalize(_aggregate(1), 0xffff);
    }

    function test_gas_finalizeRound16_steadyState() public {
        _toSteadyState();
        vm.pauseGasMetering();
        _submitAll();
        for (uint256 v; v < 3; ++v) {
            _voteAll(v, type(uint256).max);
        }
        vm.resumeGasMetering();
        _finalize(_aggregate(2), 0xffff);
    }
}
