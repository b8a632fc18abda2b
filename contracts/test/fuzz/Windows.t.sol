// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

import {IMeshLedger} from "../../src/interfaces/IMeshLedger.sol";
import {Fixture} from "../utils/Fixture.sol";

/// Submission, vote and finalization windows at fuzzed lengths and times.
contract WindowFuzzTest is Fixture {
    function _task(uint32 submissionWindow, uint32 voteWindow) internal returns (uint64 openedAt) {
        IMeshLedger.TaskParams memory p = _params();
        p.submissionWindow = submissionWindow;
        p.voteWindow = voteWindow;
        vm.prank(admin);
        taskId = ledger.createTask(p);
        return uint64(block.timestamp);
    }

    function testFuzz_submitUpdate_acceptedExactlyInsideTheWindow(uint32 window, uint256 at) public {
        window = uint32(bound(window, 1, 30 days));
        uint64 opened = _task(window, 60);
        at = bound(at, 0, uint256(window) * 2);
        vm.warp(opened + at);
        bytes32 digest = _digest(0);
        vm.prank(contributors[0]);
        if (at < window) {
            ledger.submitUpdate(taskId, 1, digest, 1);
            assertEq(ledger.roundView(taskId, 1).submissionCount, 1, "accepted inside");
        } else {
            vm.expectRevert(
                abi.encodeWithSelector(IMeshLedger.MeshLedger_SubmissionsClosed.selector, taskId, 1, opened + window)
            );
            ledger.submitUpdate(taskId, 1, digest, 1);
        }
    }

    function testFuzz_vote_acceptedUntilTheVoteWindowEnds(uint32 sWindow, uint32 vWindow, uint256 at) public {
        sWindow = uint32(bound(sWindow, 1, 30 days));
        vWindow = uint32(bound(vWindow, 1, 30 days));
        uint64 opened = _task(sWindow, vWindow);
        _submitAs(contributors[0], 1, _digest(0), 1);
        uint64 voteEnd = opened + sWindow + vWindow;
        at = bound(at, 0, uint256(sWindow) + vWindow * 2);
        vm.warp(opened + at);
        vm.prank(validatorAddrs[0]);
        if (opened + at < voteEnd) {
            ledger.vote(taskId, 1, 0, true, 0);
            (uint256 voted,) = ledger.ballot(taskId, 1, validatorAddrs[0]);
            assertEq(voted, 1, "counted");
        } else {
            vm.expectRevert(abi.encodeWithSelector(IMeshLedger.MeshLedger_VotingClosed.selector, taskId, 1, voteEnd));
            ledger.vote(taskId, 1, 0, true, 0);
        }
    }

    function testFuzz_vote_windowStartsAtTheEarlyClose(uint32 vWindow, uint256 closeAt, uint256 at) public {
        vWindow = uint32(bound(vWindow, 1, 1 days));
        uint64 opened = _task(uint32(SUBMISSION_WINDOW), vWindow);
        closeAt = bound(closeAt, 0, SUBMISSION_WINDOW - 1);
        vm.warp(opened + closeAt);
        _submitAll(); // everyone in: closed at `closeAt`
        uint64 voteEnd = uint64(opened + closeAt + vWindow);
        assertEq(ledger.roundView(taskId, 1).voteEnd, voteEnd, "vote end from the close");
        at = bound(at, opened + closeAt, voteEnd + 10);
        vm.warp(at);
        vm.prank(validatorAddrs[1]);
        if (at < voteEnd) {
            ledger.vote(taskId, 1, 2, false, 9);
        } else {
            vm.expectRevert(abi.encodeWithSelector(IMeshLedger.MeshLedger_VotingClosed.selector, taskId, 1, voteEnd));
            ledger.vote(taskId, 1, 2, false, 9);
        }
    }

    function testFuzz_finalizeRound_allowedOnlyAfterVotesOrWindow(uint256 at, uint8 voters) public {
        _submitAll();
        uint64 closed = uint64(block.timestamp);
        voters = uint8(bound(voters, 0, 3));
        for (uint256 v; v < voters; ++v) {
            _voteAll(v, 0xf);
        }
        uint64 voteEnd = closed + uint64(VOTE_WINDOW);
        at = bound(at, closed, voteEnd + 1 days);
        vm.warp(at);
        uint256 outcome = voters >= QUORUM ? 0xf : 0;
        bytes32 agg = outcome == 0 ? GENESIS : _aggregate(1);
        vm.prank(aggregator);
        if (voters == 3 || at >= voteEnd) {
            ledger.finalizeRound(taskId, 1, agg, outcome);
            assertEq(_round(), 2, "finalized");
        } else {
            vm.expectRevert(
                abi.encodeWithSelector(IMeshLedger.MeshLedger_FinalizeTooEarly.selector, taskId, 1, voteEnd)
            );
            ledger.finalizeRound(taskId, 1, agg, outcome);
        }
    }

    function testFuzz_roundView_phaseFollowsTime(uint32 sWindow, uint32 vWindow, uint256 at) public {
        sWindow = uint32(bound(sWindow, 1, 30 days));
        vWindow = uint32(bound(vWindow, 1, 30 days));
        uint64 opened = _task(sWindow, vWindow);
        at = bound(at, 0, uint256(sWindow) + vWindow + 100);
        vm.warp(opened + at);
        IMeshLedger.Phase phase = ledger.roundView(taskId, 1).phase;
        IMeshLedger.Phase expected = at < sWindow
            ? IMeshLedger.Phase.Open
            : at < uint256(sWindow) + vWindow ? IMeshLedger.Phase.Voting : IMeshLedger.Phase.Closed;
        assertEq(uint8(phase), uint8(expected), "phase");
    }
}
