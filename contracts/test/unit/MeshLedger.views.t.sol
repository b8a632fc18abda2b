// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

import {IMeshLedger} from "../../src/interfaces/IMeshLedger.sol";
import {Fixture} from "../utils/Fixture.sol";

/// The views clients use: task, rounds and their phases, submissions, ballots, tally, accounts, hashing.
contract MeshLedgerViewsTest is Fixture {
    // ─── task / currentRound ───

    function test_task_revertsOnUnknownTask() public {
        vm.expectRevert(abi.encodeWithSelector(IMeshLedger.MeshLedger_UnknownTask.selector, 0));
        ledger.task(0);
    }

    function test_currentRound_followsFinalization() public {
        assertEq(ledger.currentRound(taskId), 1, "round 1");
        _playRound(0);
        assertEq(ledger.currentRound(taskId), 2, "round 2");
    }

    function test_currentRound_revertsOnUnknownTask() public {
        vm.expectRevert(abi.encodeWithSelector(IMeshLedger.MeshLedger_UnknownTask.selector, 3));
        ledger.currentRound(3);
    }

    // ─── roundView ───

    function test_roundView_phasesFollowTheWindows() public {
        IMeshLedger.RoundView memory r = ledger.roundView(taskId, 1);
        assertEq(uint8(r.phase), uint8(IMeshLedger.Phase.Open), "open");
        assertEq(r.baseDigest, GENESIS, "base");
        assertEq(r.openedAt, START_TIME, "opened");
        assertEq(r.submissionEnd, START_TIME + SUBMISSION_WINDOW, "submission end");
        assertEq(r.voteEnd, START_TIME + SUBMISSION_WINDOW + VOTE_WINDOW, "vote end");
        assertFalse(r.finalizable, "not finalizable while open");

        vm.warp(r.submissionEnd);
        r = ledger.roundView(taskId, 1);
        assertEq(uint8(r.phase), uint8(IMeshLedger.Phase.Voting), "voting");
        // No submissions and so nothing to vote on: every validator "voted on every update".
        assertTrue(r.finalizable, "finalizable with nothing to vote on");

        vm.warp(r.voteEnd);
        r = ledger.roundView(taskId, 1);
        assertEq(uint8(r.phase), uint8(IMeshLedger.Phase.Closed), "closed");
        assertTrue(r.finalizable, "finalizable when closed");
    }

    function test_roundView_notFinalizableWhileVotesMissing() public {
        _submitAll();
        _voteAll(0, 0xf);
        IMeshLedger.RoundView memory r = ledger.roundView(taskId, 1);
        assertEq(uint8(r.phase), uint8(IMeshLedger.Phase.Voting), "voting");
        assertFalse(r.finalizable, "two validators missing");
    }

    function test_roundView_finalizedRoundKeepsOnlyLineage() public {
        _playRound(0);
        IMeshLedger.RoundView memory r = ledger.roundView(taskId, 1);
        assertEq(uint8(r.phase), uint8(IMeshLedger.Phase.Finalized), "finalized");
        assertEq(r.baseDigest, GENESIS, "base");
        assertEq(r.aggregateDigest, _aggregate(1), "aggregate");
        assertEq(r.submissionCount, 0, "live detail dropped");
    }

    function test_roundView_revertsOnRoundZero() public {
        vm.expectRevert(abi.encodeWithSelector(IMeshLedger.MeshLedger_UnknownRound.selector, taskId, 0));
        ledger.roundView(taskId, 0);
    }

    function test_roundView_revertsOnFutureRound() public {
        vm.expectRevert(abi.encodeWithSelector(IMeshLedger.MeshLedger_UnknownRound.selector, taskId, 2));
        ledger.roundView(taskId, 2);
    }

    function test_roundView_revertsOnUnknownTask() public {
        vm.expectRevert(abi.encodeWithSelector(IMeshLedger.MeshLedger_UnknownTask.selector, 9));
        ledger.roundView(9, 1);
    }

    // ─── lineage ───

    function test_baseDigest_chainsAggregates() public {
        _playRound(0);
        _playRound(0);
        assertEq(ledger.baseDigest(taskId, 1), GENESIS, "genesis");
        assertEq(ledger.baseDigest(taskId, 2), _aggregate(1), "round 1 aggregate");
        assertEq(ledger.baseDigest(taskId, 3), _aggregate(2), "round 2 aggregate");
        assertEq(ledger.aggregateDigest(taskId, 3), bytes32(0), "live round has none yet");
    }

    function test_baseDigest_revertsOnFutureRound() public {
        vm.expectRevert(abi.encodeWithSelector(IMeshLedger.MeshLedger_UnknownRound.selector, taskId, 4));
        ledger.baseDigest(taskId, 4);
    }

    function test_baseDigest_revertsOnUnknownTask() public {
        vm.expectRevert(abi.encodeWithSelector(IMeshLedger.MeshLedger_UnknownTask.selector, 4));
        ledger.baseDigest(4, 1);
    }

    function test_aggregateDigest_revertsOnRoundZero() public {
        vm.expectRevert(abi.encodeWithSelector(IMeshLedger.MeshLedger_UnknownRound.selector, taskId, 0));
        ledger.aggregateDigest(taskId, 0);
    }

    function test_aggregateDigest_revertsOnUnknownTask() public {
        vm.expectRevert(abi.encodeWithSelector(IMeshLedger.MeshLedger_UnknownTask.selector, 4));
        ledger.aggregateDigest(4, 1);
    }

    // ─── submissions ───

    function test_submission_revertsOnIndexNotSubmitted() public {
        _submit(0);
        vm.expectRevert(abi.encodeWithSelector(IMeshLedger.MeshLedger_UnknownUpdates.selector, taskId, 1, 1 << 1, 1));
        ledger.submission(taskId, 1, 1);
    }

    function test_submission_revertsOnFinalizedRound() public {
        _playRound(0);
        vm.expectRevert(abi.encodeWithSelector(IMeshLedger.MeshLedger_RoundNotLive.selector, taskId, 1, 2));
        ledger.submission(taskId, 1, 0);
    }

    function test_submissionOf_falseWhenNotSubmitted() public {
        _submit(0);
        (bool submitted, uint16 index, uint64 samples) = ledger.submissionOf(taskId, 1, contributors[1]);
        assertFalse(submitted, "not submitted");
        assertEq(index, 0, "no index");
        assertEq(samples, 0, "no samples");
    }

    function test_submissionOf_revertsOnFinalizedRound() public {
        _playRound(0);
        vm.expectRevert(abi.encodeWithSelector(IMeshLedger.MeshLedger_RoundNotLive.selector, taskId, 1, 2));
        ledger.submissionOf(taskId, 1, contributors[0]);
    }

    // ─── ballot / tally ───

    function test_ballot_emptyBeforeVoting() public view {
        (uint256 indexes, uint256 accepts) = ledger.ballot(taskId, 1, validatorAddrs[0]);
        assertEq(indexes, 0, "nothing voted");
        assertEq(accepts, 0, "nothing accepted");
    }

    function test_ballot_revertsOnFinalizedRound() public {
        _playRound(0);
        vm.expectRevert(abi.encodeWithSelector(IMeshLedger.MeshLedger_RoundNotLive.selector, taskId, 1, 2));
        ledger.ballot(taskId, 1, validatorAddrs[0]);
    }

    function test_tally_countsAcceptsAndAppliesQuorum() public {
        _submitAll();
        _voteAll(0, 0x3);
        _voteAll(1, 0x5);
        _voteAll(2, 0x1);
        (uint256 accepted, uint16[] memory votes) = ledger.tally(taskId, 1);
        assertEq(votes.length, 4, "one count per update");
        assertEq(votes[0], 3, "update 0");
        assertEq(votes[1], 1, "update 1");
        assertEq(votes[2], 1, "update 2");
        assertEq(votes[3], 0, "update 3");
        assertEq(accepted, 0x1, "only update 0 reaches quorum 2");
    }

    function test_tally_revertsOnFinalizedRound() public {
        _playRound(0);
        vm.expectRevert(abi.encodeWithSelector(IMeshLedger.MeshLedger_RoundNotLive.selector, taskId, 1, 2));
        ledger.tally(taskId, 1);
    }

    // ─── accounts ───

    function test_account_reportsRolesSeatNonceAndReputations() public {
        IMeshLedger.AccountView memory a = ledger.account(contributors[2]);
        assertTrue(a.contributor, "contributor");
        assertFalse(a.validator, "not validator");
        assertFalse(a.aggregator, "not aggregator");
        assertEq(a.memberNumber, 3, "third seat");
        assertEq(a.nonce, 0, "nonce");
        assertEq(a.contributorReputation, 5_000, "start");
        assertEq(a.validatorReputation, 0, "never a validator");
        IMeshLedger.AccountView memory none = ledger.account(stranger);
        assertEq(none.memberNumber, 0, "no seat");
        assertFalse(none.contributor || none.validator || none.aggregator, "no roles");
    }

    function test_reputation_zeroForStrangers() public view {
        (uint32 c, uint32 v) = ledger.reputation(stranger);
        assertEq(c, 0, "contributor");
        assertEq(v, 0, "validator");
    }

    function test_nonces_countRelayedSubmissions() public {
        IMeshLedger.SignedSubmission memory sub = _signed(0, 1, 0, uint64(block.timestamp + 60));
        ledger.submitUpdateFor(taskId, 1, sub);
        assertEq(ledger.nonces(contributors[0]), 1, "one used");
        assertEq(ledger.nonces(contributors[1]), 0, "untouched");
    }

    function test_hashSubmission_isTheEip712Digest() public view {
        bytes32 domain = keccak256(
            abi.encode(
                keccak256("EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"),
                keccak256("MeshLedger"),
                keccak256("1"),
                block.chainid,
                address(ledger)
            )
        );
        bytes32 structHash = keccak256(
            abi.encode(
                keccak256(
                    "Submission(uint256 taskId,uint32 round,bytes32 digest,uint64 numSamples,uint64 nonce,uint64 deadline)"
                ),
                uint256(7),
                uint32(3),
                bytes32(uint256(0xabc)),
                uint64(99),
                uint64(4),
                uint64(1234)
            )
        );
        bytes32 expected = keccak256(abi.encodePacked(hex"1901", domain, structHash));
        assertEq(ledger.hashSubmission(7, 3, bytes32(uint256(0xabc)), 99, 4, 1234), expected, "typed-data hash");
        assertEq(
            ledger.SUBMISSION_TYPEHASH(),
            keccak256(
                "Submission(uint256 taskId,uint32 round,bytes32 digest,uint64 numSamples,uint64 nonce,uint64 deadline)"
            ),
            "type hash"
        );
    }
}
