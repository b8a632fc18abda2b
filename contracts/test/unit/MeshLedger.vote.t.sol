// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

import {IMeshLedger} from "../../src/interfaces/IMeshLedger.sol";
import {Fixture} from "../utils/Fixture.sol";

/// vote and voteBatch.
contract MeshLedgerVoteTest is Fixture {
    address internal v0;

    function setUp() public override {
        super.setUp();
        v0 = validatorAddrs[0];
        _submit(0);
        _submit(1);
        _submit(2);
    }

    // ─── vote ───

    function test_vote_recordsAcceptAndEmits() public {
        vm.expectEmit(address(ledger));
        emit IMeshLedger.VotesCast(taskId, 1, v0, 1 << 2, 1 << 2, hex"00");
        vm.prank(v0);
        ledger.vote(taskId, 1, 2, true, 0);
        (uint256 indexes, uint256 accepts) = ledger.ballot(taskId, 1, v0);
        assertEq(indexes, 1 << 2, "voted");
        assertEq(accepts, 1 << 2, "accepted");
    }

    function test_vote_recordsRejectWithReason() public {
        vm.expectEmit(address(ledger));
        emit IMeshLedger.VotesCast(taskId, 1, v0, 1 << 1, 0, hex"0e");
        vm.prank(v0);
        ledger.vote(taskId, 1, 1, false, 14);
        (uint256 indexes, uint256 accepts) = ledger.ballot(taskId, 1, v0);
        assertEq(indexes, 1 << 1, "voted");
        assertEq(accepts, 0, "rejected");
    }

    function test_vote_allowedWhileSubmissionsOpen() public {
        assertEq(uint8(ledger.roundView(taskId, 1).phase), uint8(IMeshLedger.Phase.Open), "open");
        vm.prank(v0);
        ledger.vote(taskId, 1, 0, true, 0);
        (uint256 indexes,) = ledger.ballot(taskId, 1, v0);
        assertEq(indexes, 1, "counted");
    }

    function test_vote_allowedUntilLastSecondOfVoteWindow() public {
        vm.warp(START_TIME + SUBMISSION_WINDOW + VOTE_WINDOW - 1);
        vm.prank(v0);
        ledger.vote(taskId, 1, 0, true, 0);
    }

    function test_vote_revertsWhenNotValidator() public {
        vm.prank(contributors[3]);
        vm.expectRevert(abi.encodeWithSelector(IMeshLedger.MeshLedger_NotValidator.selector, contributors[3]));
        ledger.vote(taskId, 1, 0, true, 0);
    }

    function test_vote_revertsOnAcceptWithReason() public {
        vm.prank(v0);
        vm.expectRevert(abi.encodeWithSelector(IMeshLedger.MeshLedger_InvalidReason.selector, 0, true, 3));
        ledger.vote(taskId, 1, 0, true, 3);
    }

    function test_vote_revertsOnRejectWithoutReason() public {
        vm.prank(v0);
        vm.expectRevert(abi.encodeWithSelector(IMeshLedger.MeshLedger_InvalidReason.selector, 0, false, 0));
        ledger.vote(taskId, 1, 0, false, 0);
    }

    function test_vote_revertsOnIndexNotSubmitted() public {
        vm.prank(v0);
        vm.expectRevert(abi.encodeWithSelector(IMeshLedger.MeshLedger_UnknownUpdates.selector, taskId, 1, 1 << 3, 3));
        ledger.vote(taskId, 1, 3, true, 0);
    }

    function test_vote_revertsOnIndexBeyondBitmap() public {
        vm.prank(v0);
        vm.expectRevert(abi.encodeWithSelector(IMeshLedger.MeshLedger_UnknownUpdates.selector, taskId, 1, 0, 3));
        ledger.vote(taskId, 1, 300, true, 0);
    }

    function test_vote_revertsWhenAlreadyVoted() public {
        vm.startPrank(v0);
        ledger.vote(taskId, 1, 1, true, 0);
        vm.expectRevert(abi.encodeWithSelector(IMeshLedger.MeshLedger_AlreadyVoted.selector, taskId, 1, v0, 1 << 1));
        ledger.vote(taskId, 1, 1, false, 2);
        vm.stopPrank();
    }

    function test_vote_revertsAfterVoteWindow() public {
        uint64 voteEnd = uint64(START_TIME + SUBMISSION_WINDOW + VOTE_WINDOW);
        vm.warp(voteEnd);
        vm.prank(v0);
        vm.expectRevert(abi.encodeWithSelector(IMeshLedger.MeshLedger_VotingClosed.selector, taskId, 1, voteEnd));
        ledger.vote(taskId, 1, 0, true, 0);
    }

    function test_vote_revertsOnWrongRound() public {
        vm.prank(v0);
        vm.expectRevert(abi.encodeWithSelector(IMeshLedger.MeshLedger_WrongRound.selector, taskId, 1, 2));
        ledger.vote(taskId, 2, 0, true, 0);
    }

    function test_vote_revertsOnUnknownTask() public {
        vm.prank(v0);
        vm.expectRevert(abi.encodeWithSelector(IMeshLedger.MeshLedger_UnknownTask.selector, 7));
        ledger.vote(7, 1, 0, true, 0);
    }

    function test_vote_revertsWhenRevoked() public {
        vm.prank(admin);
        ledger.revokeRole(VALIDATOR, v0);
        vm.prank(v0);
        vm.expectRevert(abi.encodeWithSelector(IMeshLedger.MeshLedger_NotValidator.selector, v0));
        ledger.vote(taskId, 1, 0, true, 0);
    }

    // ─── voteBatch ───

    function test_voteBatch_recordsAllAndEmitsOnce() public {
        vm.expectEmit(address(ledger));
        emit IMeshLedger.VotesCast(taskId, 1, v0, 0x7, 0x5, hex"000f00");
        vm.prank(v0);
        ledger.voteBatch(taskId, 1, 0x7, 0x5, hex"000f00");
        (uint256 indexes, uint256 accepts) = ledger.ballot(taskId, 1, v0);
        assertEq(indexes, 0x7, "voted on all three");
        assertEq(accepts, 0x5, "accepted 0 and 2");
    }

    function test_voteBatch_combinesWithEarlierVotes() public {
        vm.startPrank(v0);
        ledger.vote(taskId, 1, 1, false, 11);
        ledger.voteBatch(taskId, 1, 0x5, 0x4, hex"0900");
        vm.stopPrank();
        (uint256 indexes, uint256 accepts) = ledger.ballot(taskId, 1, v0);
        assertEq(indexes, 0x7, "all voted");
        assertEq(accepts, 0x4, "only 2 accepted");
    }

    function test_voteBatch_revertsOnReasonCount() public {
        vm.prank(v0);
        vm.expectRevert(abi.encodeWithSelector(IMeshLedger.MeshLedger_ReasonCount.selector, 3, 2));
        ledger.voteBatch(taskId, 1, 0x7, 0x7, hex"0000");
    }

    function test_voteBatch_revertsOnAcceptWithReason() public {
        vm.prank(v0);
        vm.expectRevert(abi.encodeWithSelector(IMeshLedger.MeshLedger_InvalidReason.selector, 2, true, 4));
        ledger.voteBatch(taskId, 1, 0x5, 0x5, hex"0004");
    }

    function test_voteBatch_revertsOnRejectWithoutReason() public {
        vm.prank(v0);
        vm.expectRevert(abi.encodeWithSelector(IMeshLedger.MeshLedger_InvalidReason.selector, 1, false, 0));
        ledger.voteBatch(taskId, 1, 0x3, 0x1, hex"0000");
    }

    function test_voteBatch_revertsOnAcceptOutsideBallot() public {
        vm.prank(v0);
        vm.expectRevert(abi.encodeWithSelector(IMeshLedger.MeshLedger_InvalidBallot.selector, 0x3, 0x4));
        ledger.voteBatch(taskId, 1, 0x3, 0x4, hex"0101");
    }

    function test_voteBatch_revertsOnEmptyBallot() public {
        vm.prank(v0);
        vm.expectRevert(abi.encodeWithSelector(IMeshLedger.MeshLedger_UnknownUpdates.selector, taskId, 1, 0, 3));
        ledger.voteBatch(taskId, 1, 0, 0, "");
    }

    function test_voteBatch_revertsOnUnsubmittedIndex() public {
        vm.prank(v0);
        vm.expectRevert(abi.encodeWithSelector(IMeshLedger.MeshLedger_UnknownUpdates.selector, taskId, 1, 0xf, 3));
        ledger.voteBatch(taskId, 1, 0xf, 0xf, hex"00000000");
    }

    function test_voteBatch_revertsOnOverlapWithEarlierVotes() public {
        vm.startPrank(v0);
        ledger.voteBatch(taskId, 1, 0x3, 0x3, hex"0000");
        vm.expectRevert(abi.encodeWithSelector(IMeshLedger.MeshLedger_AlreadyVoted.selector, taskId, 1, v0, 0x2));
        ledger.voteBatch(taskId, 1, 0x6, 0x6, hex"0000");
        vm.stopPrank();
    }

    function test_voteBatch_revertsWhenNotValidator() public {
        vm.prank(stranger);
        vm.expectRevert(abi.encodeWithSelector(IMeshLedger.MeshLedger_NotValidator.selector, stranger));
        ledger.voteBatch(taskId, 1, 0x1, 0x1, hex"00");
    }

    function test_voteBatch_revertsAfterVoteWindow() public {
        uint64 voteEnd = uint64(START_TIME + SUBMISSION_WINDOW + VOTE_WINDOW);
        vm.warp(voteEnd + 5);
        vm.prank(v0);
        vm.expectRevert(abi.encodeWithSelector(IMeshLedger.MeshLedger_VotingClosed.selector, taskId, 1, voteEnd));
        ledger.voteBatch(taskId, 1, 0x1, 0x1, hex"00");
    }

    function test_voteBatch_revertsOnWrongRound() public {
        vm.prank(v0);
        vm.expectRevert(abi.encodeWithSelector(IMeshLedger.MeshLedger_WrongRound.selector, taskId, 1, 0));
        ledger.voteBatch(taskId, 0, 0x1, 0x1, hex"00");
    }

    function test_voteBatch_ballotOfPreviousRoundDoesNotLeak() public {
        // Round 1 with all four contributors, fully voted and finalized; in round 2 the ballots start empty.
        _submit(3);
        for (uint256 v; v < 3; ++v) {
            _voteAll(v, 0xf);
        }
        _finalize(_aggregate(1), 0xf);
        _submit(0);
        (uint256 indexes, uint256 accepts) = ledger.ballot(taskId, 2, v0);
        assertEq(indexes, 0, "nothing voted in round 2");
        assertEq(accepts, 0, "nothing accepted in round 2");
        vm.prank(v0);
        ledger.vote(taskId, 2, 0, true, 0); // not refused as "already voted" by the round-1 ballot
    }
}
