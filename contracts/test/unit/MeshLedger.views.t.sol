// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

import {IMeshLedger} from "../../src/interfaces/IMeshLedger.sol";
import {Fixture} from "../utils/Fixture.sol";

/// What the views answer for live, finalized and unknown rounds.
contract MeshLedgerViewsTest is Fixture {
    function test_roundView_liveRoundTimesAndCounts() public {
        IMeshLedger.RoundView memory r = _view();
        assertEq(uint256(r.phase), uint256(IMeshLedger.Phase.Open), "open");
        assertEq(r.baseDigest, GENESIS, "base");
        assertEq(r.aggregateDigest, bytes32(0), "no aggregate yet");
        assertEq(r.openedAt, START_TIME, "opened");
        assertEq(r.submissionEnd, START_TIME + SUBMISSION_WINDOW, "submission end");
        assertEq(r.commitEnd, START_TIME + SUBMISSION_WINDOW + COMMIT_WINDOW, "commit end");
        assertEq(r.revealEnd, START_TIME + SUBMISSION_WINDOW + COMMIT_WINDOW + REVEAL_WINDOW, "reveal end");
        assertEq(r.graceEnd, r.revealEnd + FINALIZE_GRACE, "grace end");
        assertEq(r.validatorCount, 3, "set size");
        assertFalse(r.finalizable, "not finalizable");
        vm.warp(r.submissionEnd);
        assertEq(uint256(_view().phase), uint256(IMeshLedger.Phase.Commit), "commit by the clock");
        vm.warp(r.commitEnd);
        assertEq(uint256(_view().phase), uint256(IMeshLedger.Phase.Closed), "nobody committed: closed at once");
        assertTrue(_view().finalizable, "finalizable with no committer");
    }

    function test_roundView_finalizedRoundKeepsLineageOnly() public {
        _playRound(5_000);
        IMeshLedger.RoundView memory r = ledger.roundView(taskId, 1);
        assertEq(uint256(r.phase), uint256(IMeshLedger.Phase.Finalized), "finalized");
        assertEq(r.baseDigest, GENESIS, "base");
        assertEq(r.aggregateDigest, _aggregate(1), "aggregate");
        assertEq(r.submissionCount, 0, "details live in the logs");
        vm.expectRevert(abi.encodeWithSelector(IMeshLedger.MeshLedger_UnknownRound.selector, taskId, 3));
        ledger.roundView(taskId, 3);
        vm.expectRevert(abi.encodeWithSelector(IMeshLedger.MeshLedger_UnknownRound.selector, taskId, 0));
        ledger.baseDigest(taskId, 0);
    }

    function test_liveOnlyViews_revertForFinalizedRounds() public {
        _playRound(5_000);
        bytes memory notLive = abi.encodeWithSelector(IMeshLedger.MeshLedger_RoundNotLive.selector, taskId, 1, 2);
        vm.expectRevert(notLive);
        ledger.validatorSet(taskId, 1);
        vm.expectRevert(notLive);
        ledger.tally(taskId, 1);
        vm.expectRevert(notLive);
        ledger.revealedScores(taskId, 1, validatorAddrs[0]);
        vm.expectRevert(notLive);
        ledger.submission(taskId, 1, 0);
        vm.expectRevert(notLive);
        ledger.submissionOf(taskId, 1, contributors[0]);
    }

    function test_submissionViews() public {
        _submit(2);
        (address who, uint64 samples) = ledger.submission(taskId, 1, 0);
        assertEq(who, contributors[2], "contributor");
        assertEq(samples, 102, "samples");
        (bool submitted, uint16 index, uint64 s2) = ledger.submissionOf(taskId, 1, contributors[2]);
        assertTrue(submitted, "submitted");
        assertEq(index, 0, "index");
        assertEq(s2, 102, "samples");
        (submitted,,) = ledger.submissionOf(taskId, 1, contributors[0]);
        assertFalse(submitted, "not submitted");
        vm.expectRevert(abi.encodeWithSelector(IMeshLedger.MeshLedger_UnknownUpdate.selector, taskId, 1, 1, 1));
        ledger.submission(taskId, 1, 1);
    }

    function test_tally_fromRevealsSoFar() public {
        _submitAll();
        int256[][] memory rows = _sameScores(6_000);
        _toCommit();
        for (uint256 v; v < 3; ++v) {
            _commit(validatorAddrs[v], rows[v]);
        }
        (int16[] memory c, uint256 accepted) = ledger.tally(taskId, 1);
        assertEq(int256(c[0]), 0, "nothing revealed: 0");
        assertEq(accepted, 0, "nothing accepted");
        _reveal(validatorAddrs[0], rows[0]);
        _reveal(validatorAddrs[1], rows[1]);
        (c, accepted) = ledger.tally(taskId, 1);
        assertEq(int256(c[3]), 6_000, "two of three revealed 6000");
        assertEq(accepted, 15, "quorum 2 met");
    }

    function test_account_andReputation() public {
        _playRound(5_000);
        IMeshLedger.AccountView memory a = ledger.account(contributors[0]);
        assertEq(a.nonce, 0, "nonce");
        assertEq(a.contributorReputation, 5_250, "contributor reputation");
        assertEq(a.validatorReputation, 0, "never a validator");
        assertEq(a.memberNumber, 1, "first seat");
        assertTrue(a.contributor, "contributor");
        assertFalse(a.validator, "not validator");
        assertFalse(a.aggregator, "not aggregator");
        assertTrue(a.accrued > 0, "accrued");
        (uint32 c, uint32 v) = ledger.reputation(validatorAddrs[0]);
        assertEq(c, 0, "never a contributor");
        assertEq(v, 5_200, "validator reputation");
        assertTrue(ledger.account(aggregator).aggregator, "aggregator flag");
    }

    function test_unknownTask() public {
        vm.expectRevert(abi.encodeWithSelector(IMeshLedger.MeshLedger_UnknownTask.selector, 9));
        ledger.task(9);
        vm.expectRevert(abi.encodeWithSelector(IMeshLedger.MeshLedger_UnknownTask.selector, 9));
        ledger.roundView(9, 1);
        vm.expectRevert(abi.encodeWithSelector(IMeshLedger.MeshLedger_UnknownTask.selector, 9));
        ledger.currentRound(9);
    }

    function test_validators_listsCurrentHolders() public view {
        address[] memory list = ledger.validators();
        assertEq(list.length, 3, "three");
        assertEq(list[1], validatorAddrs[1], "in grant order");
        assertEq(ledger.contributorCount(), 4, "four contributors");
    }
}
