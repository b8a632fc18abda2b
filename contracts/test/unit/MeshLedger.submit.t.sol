// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

import {IMeshLedger} from "../../src/interfaces/IMeshLedger.sol";
import {Fixture} from "../utils/Fixture.sol";

/// submitUpdate, submitUpdateFor, submitUpdatesFor; sample counts (R2) and authorship (R1).
contract MeshLedgerSubmitTest is Fixture {
    uint64 internal deadline;

    function setUp() public override {
        super.setUp();
        deadline = uint64(block.timestamp + 1 hours);
    }

    // ─── submitUpdate ───

    function test_submitUpdate_recordsAndEmits() public {
        bytes32 digest = _digest(0);
        address c = contributors[0];
        vm.expectEmit(address(ledger));
        emit IMeshLedger.UpdateSubmitted(taskId, 1, c, 0, digest, 123, c);
        uint16 index = _submitAs(c, 1, digest, 123);
        assertEq(index, 0, "first index");
        (address who, uint64 samples) = ledger.submission(taskId, 1, 0);
        assertEq(who, c, "contributor");
        assertEq(samples, 123, "samples");
        (bool submitted, uint16 at, uint64 s2) = ledger.submissionOf(taskId, 1, c);
        assertTrue(submitted, "submitted");
        assertEq(at, 0, "index by contributor");
        assertEq(s2, 123, "samples by contributor");
        assertEq(ledger.roundView(taskId, 1).submissionCount, 1, "count");
    }

    function test_submitUpdate_indexesFollowSubmissionOrder() public {
        assertEq(_submit(2), 0, "first");
        assertEq(_submit(0), 1, "second");
        assertEq(_submit(3), 2, "third");
        (address who,) = ledger.submission(taskId, 1, 1);
        assertEq(who, contributors[0], "order kept");
    }

    function test_submitUpdate_closesEarlyWhenEveryContributorSubmitted() public {
        for (uint256 i; i + 1 < contributors.length; ++i) {
            _submit(i);
        }
        assertEq(uint8(ledger.roundView(taskId, 1).phase), uint8(IMeshLedger.Phase.Open), "still open");
        address last = contributors[contributors.length - 1];
        vm.expectEmit(address(ledger));
        emit IMeshLedger.SubmissionsClosed(taskId, 1, last, uint16(contributors.length), uint64(block.timestamp));
        _submit(contributors.length - 1);
        IMeshLedger.RoundView memory r = ledger.roundView(taskId, 1);
        assertEq(uint8(r.phase), uint8(IMeshLedger.Phase.Commit), "commit phase now");
        assertEq(r.submissionEnd, block.timestamp, "closed now");
        assertEq(r.commitEnd, block.timestamp + COMMIT_WINDOW, "commit window from the close");
    }

    function test_submitUpdate_revertsWhenNotContributor() public {
        bytes32 digest = _digest(9);
        vm.prank(stranger);
        vm.expectRevert(abi.encodeWithSelector(IMeshLedger.MeshLedger_NotContributor.selector, stranger));
        ledger.submitUpdate(taskId, 1, digest, 1);
    }

    function test_submitUpdate_revertsWhenRevoked() public {
        address c = contributors[0];
        _changeRole(CONTRIBUTOR, c, false);
        bytes32 digest = _digest(0);
        vm.prank(c);
        vm.expectRevert(abi.encodeWithSelector(IMeshLedger.MeshLedger_NotContributor.selector, c));
        ledger.submitUpdate(taskId, 1, digest, 1);
    }

    function test_submitUpdate_revertsOnUnknownTask() public {
        bytes32 digest = _digest(0);
        vm.prank(contributors[0]);
        vm.expectRevert(abi.encodeWithSelector(IMeshLedger.MeshLedger_UnknownTask.selector, 99));
        ledger.submitUpdate(99, 1, digest, 1);
    }

    function test_submitUpdate_revertsOnWrongRound() public {
        bytes32 digest = _digest(0);
        vm.prank(contributors[0]);
        vm.expectRevert(abi.encodeWithSelector(IMeshLedger.MeshLedger_WrongRound.selector, taskId, 1, 2));
        ledger.submitUpdate(taskId, 2, digest, 1);
    }

    function test_submitUpdate_revertsAfterSubmissionWindow() public {
        vm.warp(START_TIME + SUBMISSION_WINDOW);
        bytes32 digest = _digest(0);
        vm.prank(contributors[0]);
        vm.expectRevert(
            abi.encodeWithSelector(
                IMeshLedger.MeshLedger_SubmissionsClosed.selector, taskId, 1, uint64(START_TIME + SUBMISSION_WINDOW)
            )
        );
        ledger.submitUpdate(taskId, 1, digest, 1);
    }

    function test_submitUpdate_acceptsUntilLastSecondOfWindow() public {
        vm.warp(START_TIME + SUBMISSION_WINDOW - 1);
        assertEq(_submit(0), 0, "accepted in the window's last second");
    }

    function test_submitUpdate_revertsWhenAlreadySubmitted() public {
        _submit(0);
        bytes32 digest = _digest(7);
        vm.prank(contributors[0]);
        vm.expectRevert(
            abi.encodeWithSelector(IMeshLedger.MeshLedger_AlreadySubmitted.selector, taskId, 1, contributors[0])
        );
        ledger.submitUpdate(taskId, 1, digest, 5);
    }

    function test_submitUpdate_revertsWhenReGrantedContributorSubmitsAgain() public {
        _submit(0);
        _changeRole(CONTRIBUTOR, contributors[0], false);
        _changeRole(CONTRIBUTOR, contributors[0], true);
        bytes32 digest = _digest(7);
        vm.prank(contributors[0]);
        vm.expectRevert(
            abi.encodeWithSelector(IMeshLedger.MeshLedger_AlreadySubmitted.selector, taskId, 1, contributors[0])
        );
        ledger.submitUpdate(taskId, 1, digest, 5);
    }

    function test_submitUpdate_revertsWhenClosedEarly() public {
        // Three of four submit, then the fourth is revoked and a fresh contributor granted: the count of
        // contributors stays four, so the round is still open; after everyone in, it closes for good.
        _submitAll();
        address late = address(0x1A7E);
        _changeRole(CONTRIBUTOR, late, true);
        bytes32 digest = _digest(9);
        vm.prank(late);
        vm.expectRevert(
            abi.encodeWithSelector(
                IMeshLedger.MeshLedger_SubmissionsClosed.selector, taskId, 1, uint64(START_TIME)
            )
        );
        ledger.submitUpdate(taskId, 1, digest, 1);
    }

    function test_submitUpdate_revertsOnZeroDigest() public {
        vm.prank(contributors[0]);
        vm.expectRevert(abi.encodeWithSelector(IMeshLedger.MeshLedger_InvalidDigest.selector, bytes32(0)));
        ledger.submitUpdate(taskId, 1, bytes32(0), 1);
    }

    function test_submitUpdate_revertsOnZeroSamples() public {
        bytes32 digest = _digest(0);
        vm.prank(contributors[0]);
        vm.expectRevert(
            abi.encodeWithSelector(IMeshLedger.MeshLedger_InvalidSamples.selector, contributors[0], uint64(0))
        );
        ledger.submitUpdate(taskId, 1, digest, 0);
    }

    function test_submitUpdate_closesWhenRoundFull() public {
        uint256 max = ledger.MAX_UPDATES_PER_ROUND();
        _deploy(max + 1, 3);
        for (uint256 i; i < max; ++i) {
            _submitAs(contributors[i], 1, _digest(i), 1);
        }
        IMeshLedger.RoundView memory r = ledger.roundView(taskId, 1);
        assertEq(r.submissionCount, max, "full");
        assertEq(r.submissionEnd, block.timestamp, "closed when full");
        bytes32 digest = _digest(max);
        vm.prank(contributors[max]);
        vm.expectRevert(
            abi.encodeWithSelector(
                IMeshLedger.MeshLedger_SubmissionsClosed.selector, taskId, 1, uint64(block.timestamp)
            )
        );
        ledger.submitUpdate(taskId, 1, digest, 1);
    }

    // ─── sample counts (R2, "Why" 1) ───

    function test_submitUpdate_revertsAboveMaxSamples() public {
        bytes32 digest = _digest(0);
        vm.prank(contributors[0]);
        vm.expectRevert(
            abi.encodeWithSelector(
                IMeshLedger.MeshLedger_TooManySamples.selector, contributors[0], MAX_SAMPLES + 1, MAX_SAMPLES
            )
        );
        ledger.submitUpdate(taskId, 1, digest, MAX_SAMPLES + 1);
        vm.prank(contributors[0]);
        vm.expectRevert(
            abi.encodeWithSelector(
                IMeshLedger.MeshLedger_TooManySamples.selector, contributors[0], type(uint64).max, MAX_SAMPLES
            )
        );
        ledger.submitUpdate(taskId, 1, digest, type(uint64).max);
        assertEq(_submitAs(contributors[0], 1, digest, MAX_SAMPLES), 0, "maxSamples itself is fine");
    }

    function test_submitUpdateFor_revertsAboveMaxSamples() public {
        IMeshLedger.SignedSubmission memory sub = _signed(1, MAX_SAMPLES + 1, 0, deadline);
        vm.expectRevert(
            abi.encodeWithSelector(
                IMeshLedger.MeshLedger_TooManySamples.selector, contributors[1], MAX_SAMPLES + 1, MAX_SAMPLES
            )
        );
        ledger.submitUpdateFor(taskId, 1, sub);
    }

    /// "Why" 1: a member claiming the largest sample count earns exactly what it earns claiming one sample.
    function test_rewards_doNotDependOnSampleCounts() public {
        uint256 snapshot = vm.snapshotState();
        _submitAs(contributors[0], 1, _digest(0), MAX_SAMPLES);
        for (uint256 i = 1; i < 4; ++i) {
            _submitAs(contributors[i], 1, _digest(i), 1);
        }
        _scoreRound(_sameScores(4_000));
        _finalize(_aggregate(1));
        uint256 inflated = ledger.account(contributors[0]).accrued;
        uint256 honest = ledger.account(contributors[1]).accrued;
        vm.revertToState(snapshot);
        _submitAll(); // 100 + i samples each
        _scoreRound(_sameScores(4_000));
        _finalize(_aggregate(1));
        assertEq(inflated, ledger.account(contributors[0]).accrued, "inflated claim earns the same");
        assertEq(inflated, honest, "as much as a one-sample member with the same consensus");
    }

    // ─── authorship (R1, "Why" 3) ───

    /// The chain records the same digest from two members (the file's metadata decides who wrote it): a copier
    /// that front-runs the author cannot keep the author out.
    function test_submitUpdate_sameDigestByTwoMembersBothRecorded() public {
        bytes32 digest = _digest(0);
        assertEq(_submitAs(contributors[1], 1, digest, 10), 0, "the copier first");
        assertEq(_submitAs(contributors[0], 1, digest, 10), 1, "the author too");
        (address first,) = ledger.submission(taskId, 1, 0);
        (address second,) = ledger.submission(taskId, 1, 1);
        assertEq(first, contributors[1], "copier recorded");
        assertEq(second, contributors[0], "author recorded");
    }

    // ─── submitUpdateFor ───

    function test_submitUpdateFor_recordsConsumesNonceAndNamesRelayer() public {
        IMeshLedger.SignedSubmission memory sub = _signed(1, 42, 0, deadline);
        vm.expectEmit(address(ledger));
        emit IMeshLedger.UpdateSubmitted(taskId, 1, contributors[1], 0, sub.digest, 42, stranger);
        vm.prank(stranger);
        uint16 index = ledger.submitUpdateFor(taskId, 1, sub);
        assertEq(index, 0, "index");
        assertEq(ledger.nonces(contributors[1]), 1, "nonce consumed");
        (address who, uint64 samples) = ledger.submission(taskId, 1, 0);
        assertEq(who, contributors[1], "contributor, not relayer");
        assertEq(samples, 42, "samples");
    }

    function test_submitUpdateFor_acceptsAtDeadline() public {
        IMeshLedger.SignedSubmission memory sub = _signed(1, 42, 0, uint64(block.timestamp));
        assertEq(ledger.submitUpdateFor(taskId, 1, sub), 0, "deadline is inclusive");
    }

    function test_submitUpdateFor_revertsWhenExpired() public {
        IMeshLedger.SignedSubmission memory sub = _signed(1, 42, 0, uint64(block.timestamp - 1));
        vm.expectRevert(
            abi.encodeWithSelector(
                IMeshLedger.MeshLedger_SignatureExpired.selector, contributors[1], sub.deadline, block.timestamp
            )
        );
        ledger.submitUpdateFor(taskId, 1, sub);
    }

    function test_submitUpdateFor_revertsOnWrongNonce() public {
        IMeshLedger.SignedSubmission memory sub = _signed(1, 42, 1, deadline);
        vm.expectRevert(
            abi.encodeWithSelector(IMeshLedger.MeshLedger_InvalidNonce.selector, contributors[1], uint64(0), uint64(1))
        );
        ledger.submitUpdateFor(taskId, 1, sub);
    }

    function test_submitUpdateFor_revertsOnReplayInNextRound() public {
        IMeshLedger.SignedSubmission memory sub = _signed(1, 42, 0, deadline);
        ledger.submitUpdateFor(taskId, 1, sub);
        // Even once the contributor could submit again (a new round), the used signature is dead.
        _submit(0);
        _submit(2);
        _submit(3);
        _scoreRound(_sameScores(1_000));
        _finalize(_aggregate(1));
        vm.expectRevert(
            abi.encodeWithSelector(IMeshLedger.MeshLedger_InvalidNonce.selector, contributors[1], uint64(1), uint64(0))
        );
        ledger.submitUpdateFor(taskId, 2, sub);
    }

    function test_submitUpdateFor_revertsOnWrongSigner() public {
        IMeshLedger.SignedSubmission memory sub = _signed(1, 42, 0, deadline);
        sub.contributor = contributors[2]; // signed by contributor 1, claimed for contributor 2
        vm.expectRevert(
            abi.encodeWithSelector(IMeshLedger.MeshLedger_InvalidSignature.selector, contributors[2], contributors[1])
        );
        ledger.submitUpdateFor(taskId, 1, sub);
    }

    function test_submitUpdateFor_revertsOnAlteredSamples() public {
        IMeshLedger.SignedSubmission memory sub = _signed(1, 42, 0, deadline);
        sub.numSamples = 4_200;
        vm.expectRevert(); // recovers some other address
        ledger.submitUpdateFor(taskId, 1, sub);
        assertEq(ledger.nonces(contributors[1]), 0, "nonce not consumed");
    }

    function test_submitUpdateFor_revertsOnMalformedSignature() public {
        IMeshLedger.SignedSubmission memory sub = _signed(1, 42, 0, deadline);
        sub.v = 29; // not 27 or 28: ecrecover fails
        vm.expectRevert(
            abi.encodeWithSelector(IMeshLedger.MeshLedger_InvalidSignature.selector, contributors[1], address(0))
        );
        ledger.submitUpdateFor(taskId, 1, sub);
    }

    function test_submitUpdateFor_revertsOnHighS() public {
        IMeshLedger.SignedSubmission memory sub = _signed(1, 42, 0, deadline);
        // The malleable twin (s' = n - s, v flipped) is refused, so a signature has exactly one encoding.
        sub.s = bytes32(0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141 - uint256(sub.s));
        sub.v = sub.v == 27 ? 28 : 27;
        vm.expectRevert(
            abi.encodeWithSelector(IMeshLedger.MeshLedger_InvalidSignature.selector, contributors[1], address(0))
        );
        ledger.submitUpdateFor(taskId, 1, sub);
    }

    function test_submitUpdateFor_revertsWhenSignerNotContributor() public {
        uint256 key = 0xBAD;
        IMeshLedger.SignedSubmission memory sub = _signedWith(key, vm.addr(key), 1, _digest(5), 1, 0, deadline);
        vm.expectRevert(abi.encodeWithSelector(IMeshLedger.MeshLedger_NotContributor.selector, vm.addr(key)));
        ledger.submitUpdateFor(taskId, 1, sub);
    }

    function test_submitUpdateFor_revertsWhenSignedForOtherRound() public {
        IMeshLedger.SignedSubmission memory sub =
            _signedWith(contributorKeys[1], contributors[1], 2, _digest(1), 42, 0, deadline);
        vm.expectRevert(); // the hash is computed over the live round 1: another signer recovers
        ledger.submitUpdateFor(taskId, 1, sub);
    }

    function test_submitUpdateFor_revertsOnWrongRound() public {
        IMeshLedger.SignedSubmission memory sub = _signed(1, 42, 0, deadline);
        vm.expectRevert(abi.encodeWithSelector(IMeshLedger.MeshLedger_WrongRound.selector, taskId, 1, 3));
        ledger.submitUpdateFor(taskId, 3, sub);
    }

    function test_submitUpdateFor_revertsWhenAlreadySubmittedDirectly() public {
        _submit(1);
        IMeshLedger.SignedSubmission memory sub = _signed(1, 42, 0, deadline);
        vm.expectRevert(
            abi.encodeWithSelector(IMeshLedger.MeshLedger_AlreadySubmitted.selector, taskId, 1, contributors[1])
        );
        ledger.submitUpdateFor(taskId, 1, sub);
    }

    // ─── submitUpdatesFor ───

    function test_submitUpdatesFor_recordsAllInOrder() public {
        IMeshLedger.SignedSubmission[] memory subs = new IMeshLedger.SignedSubmission[](3);
        subs[0] = _signed(2, 20, 0, deadline);
        subs[1] = _signed(0, 10, 0, deadline);
        subs[2] = _signed(3, 30, 0, deadline);
        uint16 first = ledger.submitUpdatesFor(taskId, 1, subs);
        assertEq(first, 0, "first index");
        (address who, uint64 samples) = ledger.submission(taskId, 1, 1);
        assertEq(who, contributors[0], "second item at index 1");
        assertEq(samples, 10, "its samples");
        assertEq(ledger.roundView(taskId, 1).submissionCount, 3, "count");
        assertEq(ledger.nonces(contributors[3]), 1, "nonce consumed");
    }

    function test_submitUpdatesFor_firstIndexContinuesAfterDirectSubmissions() public {
        _submit(0);
        IMeshLedger.SignedSubmission[] memory subs = new IMeshLedger.SignedSubmission[](1);
        subs[0] = _signed(1, 20, 0, deadline);
        assertEq(ledger.submitUpdatesFor(taskId, 1, subs), 1, "after the direct one");
    }

    function test_submitUpdatesFor_revertsOnEmptyBatch() public {
        IMeshLedger.SignedSubmission[] memory subs = new IMeshLedger.SignedSubmission[](0);
        vm.expectRevert(IMeshLedger.MeshLedger_EmptyBatch.selector);
        ledger.submitUpdatesFor(taskId, 1, subs);
    }

    function test_submitUpdatesFor_revertsAllOnOneBadItem() public {
        IMeshLedger.SignedSubmission[] memory subs = new IMeshLedger.SignedSubmission[](2);
        subs[0] = _signed(0, 10, 0, deadline);
        subs[1] = _signed(1, 20, 5, deadline); // wrong nonce
        vm.expectRevert(
            abi.encodeWithSelector(IMeshLedger.MeshLedger_InvalidNonce.selector, contributors[1], uint64(0), uint64(5))
        );
        ledger.submitUpdatesFor(taskId, 1, subs);
        assertEq(ledger.roundView(taskId, 1).submissionCount, 0, "nothing recorded");
        assertEq(ledger.nonces(contributors[0]), 0, "no nonce consumed");
    }

    function test_submitUpdatesFor_revertsOnDuplicateContributorInBatch() public {
        IMeshLedger.SignedSubmission[] memory subs = new IMeshLedger.SignedSubmission[](2);
        subs[0] = _signed(0, 10, 0, deadline);
        subs[1] = _signedWith(contributorKeys[0], contributors[0], 1, _digest(8), 10, 1, deadline);
        vm.expectRevert(
            abi.encodeWithSelector(IMeshLedger.MeshLedger_AlreadySubmitted.selector, taskId, 1, contributors[0])
        );
        ledger.submitUpdatesFor(taskId, 1, subs);
    }

    function test_submitUpdatesFor_revertsOnItemAfterEarlyClose() public {
        // Everybody is in after the fourth item; a fifth (a contributor granted in between) is refused.
        IMeshLedger.SignedSubmission[] memory subs = new IMeshLedger.SignedSubmission[](5);
        for (uint256 i; i < 4; ++i) {
            subs[i] = _signed(i, 10, 0, deadline);
        }
        uint256 key = 0x1A7E;
        subs[4] = _signedWith(key, vm.addr(key), 1, _digest(4), 10, 0, deadline);
        uint256 snapshot = vm.snapshotState();
        _changeRole(CONTRIBUTOR, vm.addr(key), true);
        // With five contributors nobody closed early: the batch goes through.
        ledger.submitUpdatesFor(taskId, 1, subs);
        assertEq(ledger.roundView(taskId, 1).submissionCount, 5, "all five");
        vm.revertToState(snapshot);
        // Without the newcomer, four contributors close the round at the fourth item.
        vm.expectRevert(
            abi.encodeWithSelector(
                IMeshLedger.MeshLedger_SubmissionsClosed.selector, taskId, 1, uint64(block.timestamp)
            )
        );
        ledger.submitUpdatesFor(taskId, 1, subs);
    }

    function test_submitUpdatesFor_revertsAfterWindow() public {
        IMeshLedger.SignedSubmission[] memory subs = new IMeshLedger.SignedSubmission[](1);
        subs[0] = _signed(0, 10, 0, uint64(START_TIME + 10 hours));
        vm.warp(START_TIME + SUBMISSION_WINDOW);
        vm.expectRevert(
            abi.encodeWithSelector(
                IMeshLedger.MeshLedger_SubmissionsClosed.selector, taskId, 1, uint64(START_TIME + SUBMISSION_WINDOW)
            )
        );
        ledger.submitUpdatesFor(taskId, 1, subs);
    }
}
