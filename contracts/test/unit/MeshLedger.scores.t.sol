// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

import {IMeshLedger} from "../../src/interfaces/IMeshLedger.sol";
import {Fixture} from "../utils/Fixture.sol";

/// commitScores and revealScores (R3), and the validator set frozen at round open (R6).
contract MeshLedgerScoresTest is Fixture {
    int256[] internal scores;

    function setUp() public override {
        super.setUp();
        _submitAll();
        scores = _uniform(4, 3_000);
        scores[2] = -10_000; // a hard reject, with its reason code
    }

    // ─── commit ───

    function test_commitScores_recordsAndEmits() public {
        bytes32 c = _commitment(validatorAddrs[0], scores);
        vm.expectEmit(address(ledger));
        emit IMeshLedger.ScoresCommitted(taskId, 1, validatorAddrs[0], c);
        vm.prank(validatorAddrs[0]);
        ledger.commitScores(taskId, 1, c);
        (,, uint256 committed, uint256 revealed) = ledger.validatorSet(taskId, 1);
        assertEq(committed, 1, "member 0 committed");
        assertEq(revealed, 0, "nothing revealed");
        assertEq(_view().commitCount, 1, "count");
    }

    function test_commitScores_revertsWhileSubmissionsOpen() public {
        _deploy(4, 3); // a fresh task, submissions open
        bytes32 c = keccak256("c");
        vm.prank(validatorAddrs[0]);
        vm.expectRevert(
            abi.encodeWithSelector(
                IMeshLedger.MeshLedger_CommitNotOpen.selector, taskId, 1, uint64(START_TIME + SUBMISSION_WINDOW)
            )
        );
        ledger.commitScores(taskId, 1, c);
    }

    /// A commit after the commit window is refused (nobody can bind scores after seeing others' reveals).
    function test_commitScores_revertsAfterCommitWindow() public {
        uint64 commitEnd = _view().commitEnd;
        vm.warp(commitEnd);
        bytes32 c = _commitment(validatorAddrs[0], scores);
        vm.prank(validatorAddrs[0]);
        vm.expectRevert(abi.encodeWithSelector(IMeshLedger.MeshLedger_CommitClosed.selector, taskId, 1, commitEnd));
        ledger.commitScores(taskId, 1, c);
    }

    function test_commitScores_endsCommitPhaseWhenEveryMemberCommitted() public {
        vm.warp(block.timestamp + 60);
        for (uint256 v; v < 3; ++v) {
            _commit(validatorAddrs[v], scores);
        }
        IMeshLedger.RoundView memory r = _view();
        assertEq(r.commitEnd, block.timestamp, "commit phase over now");
        assertEq(uint256(r.phase), uint256(IMeshLedger.Phase.Reveal), "reveal phase");
        assertEq(r.revealEnd, block.timestamp + REVEAL_WINDOW, "reveal window from now");
    }

    function test_commitScores_revertsWhenAlreadyCommitted() public {
        _commit(validatorAddrs[0], scores);
        bytes32 other = keccak256("other");
        vm.prank(validatorAddrs[0]);
        vm.expectRevert(
            abi.encodeWithSelector(IMeshLedger.MeshLedger_AlreadyCommitted.selector, taskId, 1, validatorAddrs[0])
        );
        ledger.commitScores(taskId, 1, other);
    }

    function test_commitScores_revertsForNonMembers() public {
        bytes32 c = keccak256("c");
        address[2] memory outsiders = [stranger, contributors[0]];
        for (uint256 i; i < 2; ++i) {
            vm.prank(outsiders[i]);
            vm.expectRevert(
                abi.encodeWithSelector(IMeshLedger.MeshLedger_NotInValidatorSet.selector, taskId, 1, outsiders[i])
            );
            ledger.commitScores(taskId, 1, c);
        }
    }

    function test_commitScores_revertsOnWrongRound() public {
        bytes32 c = keccak256("c");
        vm.prank(validatorAddrs[0]);
        vm.expectRevert(abi.encodeWithSelector(IMeshLedger.MeshLedger_WrongRound.selector, taskId, 1, 2));
        ledger.commitScores(taskId, 2, c);
    }

    // ─── the frozen validator set ("Why" 6) ───

    /// A validator granted during the round is not in its set: it cannot commit, and nobody's weight changes.
    function test_newValidatorGrantedMidRoundCannotCommit() public {
        _deploy(4, 3);
        address late = address(0x1A7E);
        _changeRole(VALIDATOR, late, true); // executes within the submission window
        _submitAll();
        bytes32 c = keccak256("c");
        vm.prank(late);
        vm.expectRevert(abi.encodeWithSelector(IMeshLedger.MeshLedger_NotInValidatorSet.selector, taskId, 1, late));
        ledger.commitScores(taskId, 1, c);
        (address[] memory members,,,) = ledger.validatorSet(taskId, 1);
        assertEq(members.length, 3, "the set of round 1 is unchanged");
        // The next round's set includes it.
        _scoreRound(_sameScores(2_000));
        _finalize(_aggregate(1));
        (members,,,) = ledger.validatorSet(taskId, 2);
        assertEq(members.length, 4, "frozen again at the next round's opening");
        assertEq(members[3], late, "with the newcomer");
    }

    /// A validator revoked after committing keeps its place in the round: its reveal counts with its weight.
    function test_revokeAfterCommitChangesNothing() public {
        int256[][] memory rows = _sameScores(4_000);
        _toCommit();
        for (uint256 v; v < 3; ++v) {
            _commit(validatorAddrs[v], rows[v]);
        }
        uint256 snapshot = vm.snapshotState();
        _toReveal();
        for (uint256 v; v < 3; ++v) {
            _reveal(validatorAddrs[v], rows[v]);
        }
        (int16[] memory expected, uint256 expectedAccepted) = ledger.tally(taskId, 1);
        vm.revertToState(snapshot);

        // Revoke validator 0 (the delay is shorter than the commit window), then everyone reveals as before.
        _changeRole(VALIDATOR, validatorAddrs[0], false);
        assertFalse(ledger.account(validatorAddrs[0]).validator, "role gone");
        _toReveal();
        for (uint256 v; v < 3; ++v) {
            _reveal(validatorAddrs[v], rows[v]);
        }
        (int16[] memory got, uint256 accepted) = ledger.tally(taskId, 1);
        assertEq(accepted, expectedAccepted, "same accepted set");
        for (uint256 i; i < got.length; ++i) {
            assertEq(int256(got[i]), int256(expected[i]), "same consensus");
        }
        (address[] memory members, uint16[] memory weights,, uint256 revealed) = ledger.validatorSet(taskId, 1);
        assertEq(members[0], validatorAddrs[0], "still member 0");
        assertEq(weights[0], 5_000, "with its frozen weight");
        assertEq(revealed, 7, "its reveal recorded");
    }

    // ─── reveal ───

    function _commitAllAndToReveal() internal {
        for (uint256 v; v < 3; ++v) {
            _commit(validatorAddrs[v], scores);
        }
    }

    function test_revealScores_recordsAndEmits() public {
        _commitAllAndToReveal();
        bytes memory encoded = _encode(scores);
        bytes memory reasons = _reasonsFor(scores);
        vm.expectEmit(address(ledger));
        emit IMeshLedger.ScoresRevealed(taskId, 1, validatorAddrs[1], encoded, reasons);
        _reveal(validatorAddrs[1], scores);
        (bool revealed, int16[] memory got) = ledger.revealedScores(taskId, 1, validatorAddrs[1]);
        assertTrue(revealed, "revealed");
        assertEq(got.length, 4, "one per update");
        for (uint256 i; i < 4; ++i) {
            assertEq(int256(got[i]), scores[i], "scores as revealed");
        }
        (revealed, got) = ledger.revealedScores(taskId, 1, validatorAddrs[0]);
        assertFalse(revealed, "others not yet");
        assertEq(got.length, 0, "no scores");
    }

    function test_revealScores_revertsBeforeCommitPhaseEnds() public {
        _commit(validatorAddrs[0], scores);
        uint64 commitEnd = _view().commitEnd;
        bytes memory encoded = _encode(scores);
        bytes memory reasons = _reasonsFor(scores);
        vm.prank(validatorAddrs[0]);
        vm.expectRevert(abi.encodeWithSelector(IMeshLedger.MeshLedger_RevealNotOpen.selector, taskId, 1, commitEnd));
        ledger.revealScores(taskId, 1, encoded, reasons, SALT);
    }

    /// A reveal that does not match its commitment is refused: scores cannot change after seeing others'.
    function test_revealScores_revertsOnMismatch() public {
        _commitAllAndToReveal();
        int256[] memory changed = _uniform(4, 3_000);
        changed[2] = -10_000;
        changed[0] = 2_999;
        bytes memory encoded = _encode(changed);
        bytes memory reasons = _reasonsFor(changed);
        bytes32 committed = _commitment(validatorAddrs[0], scores);
        bytes32 computed = _commitment(validatorAddrs[0], changed);
        vm.prank(validatorAddrs[0]);
        vm.expectRevert(
            abi.encodeWithSelector(
                IMeshLedger.MeshLedger_RevealMismatch.selector, taskId, 1, validatorAddrs[0], committed, computed
            )
        );
        ledger.revealScores(taskId, 1, encoded, reasons, SALT);
        // Another salt, or another validator's commitment (copying one is useless), fails the same way.
        encoded = _encode(scores);
        reasons = _reasonsFor(scores);
        vm.prank(validatorAddrs[0]);
        vm.expectRevert();
        ledger.revealScores(taskId, 1, encoded, reasons, keccak256("another salt"));
    }

    function test_revealScores_bindsValidatorChainAndLedger() public view {
        bytes memory encoded = _encode(scores);
        bytes memory reasons = _reasonsFor(scores);
        bytes32 view_ = ledger.scoreCommitment(taskId, 1, validatorAddrs[0], encoded, reasons, SALT);
        assertEq(view_, _commitment(validatorAddrs[0], scores), "view = documented encoding");
        assertTrue(
            view_ != ledger.scoreCommitment(taskId, 1, validatorAddrs[1], encoded, reasons, SALT),
            "another validator's commitment differs"
        );
    }

    function test_revealScores_revertsWhenNotCommitted() public {
        for (uint256 v = 1; v < 3; ++v) {
            _commit(validatorAddrs[v], scores);
        }
        _toReveal();
        bytes memory encoded = _encode(scores);
        bytes memory reasons = _reasonsFor(scores);
        vm.prank(validatorAddrs[0]);
        vm.expectRevert(
            abi.encodeWithSelector(IMeshLedger.MeshLedger_NotCommitted.selector, taskId, 1, validatorAddrs[0])
        );
        ledger.revealScores(taskId, 1, encoded, reasons, SALT);
    }

    function test_revealScores_revertsWhenAlreadyRevealed() public {
        _commitAllAndToReveal();
        _reveal(validatorAddrs[0], scores);
        bytes memory encoded = _encode(scores);
        bytes memory reasons = _reasonsFor(scores);
        vm.prank(validatorAddrs[0]);
        vm.expectRevert(
            abi.encodeWithSelector(IMeshLedger.MeshLedger_AlreadyRevealed.selector, taskId, 1, validatorAddrs[0])
        );
        ledger.revealScores(taskId, 1, encoded, reasons, SALT);
    }

    function test_revealScores_revertsAfterRevealWindow() public {
        _commitAllAndToReveal();
        uint64 revealEnd = _view().revealEnd;
        vm.warp(revealEnd);
        bytes memory encoded = _encode(scores);
        bytes memory reasons = _reasonsFor(scores);
        vm.prank(validatorAddrs[0]);
        vm.expectRevert(abi.encodeWithSelector(IMeshLedger.MeshLedger_RevealClosed.selector, taskId, 1, revealEnd));
        ledger.revealScores(taskId, 1, encoded, reasons, SALT);
    }

    function test_revealScores_revertsOnWrongLengths() public {
        _commitAllAndToReveal();
        int256[] memory three = _uniform(3, 1);
        bytes memory encoded = _encode(three);
        bytes memory reasons = _reasonsFor(scores);
        vm.prank(validatorAddrs[0]);
        vm.expectRevert(abi.encodeWithSelector(IMeshLedger.MeshLedger_RevealLength.selector, 8, 6, 4, 4));
        ledger.revealScores(taskId, 1, encoded, reasons, SALT);
        encoded = _encode(scores);
        reasons = hex"000000";
        vm.prank(validatorAddrs[0]);
        vm.expectRevert(abi.encodeWithSelector(IMeshLedger.MeshLedger_RevealLength.selector, 8, 8, 4, 3));
        ledger.revealScores(taskId, 1, encoded, reasons, SALT);
    }

    function test_revealScores_revertsOnScoreOutOfRange() public {
        int256[] memory bad = _uniform(4, 0);
        bad[3] = 10_001;
        _commit(validatorAddrs[0], bad);
        _toReveal();
        bytes memory encoded = _encode(bad);
        bytes memory reasons = _reasonsFor(bad);
        vm.prank(validatorAddrs[0]);
        vm.expectRevert(abi.encodeWithSelector(IMeshLedger.MeshLedger_InvalidScore.selector, uint16(3), int16(10_001)));
        ledger.revealScores(taskId, 1, encoded, reasons, SALT);
    }

    function test_revealScores_revertsOnReasonWithoutHardReject() public {
        bytes memory encoded = _encode(scores);
        bytes memory reasons = hex"00000000";
        reasons[1] = bytes1(uint8(7)); // a reason code on a score of 3000
        bytes32 c = keccak256(
            abi.encode(
                block.chainid,
                address(ledger),
                taskId,
                uint32(1),
                validatorAddrs[0],
                keccak256(encoded),
                keccak256(reasons),
                SALT
            )
        );
        vm.prank(validatorAddrs[0]);
        ledger.commitScores(taskId, 1, c);
        _toReveal();
        vm.prank(validatorAddrs[0]);
        vm.expectRevert(
            abi.encodeWithSelector(IMeshLedger.MeshLedger_InvalidReason.selector, uint16(1), int16(3_000), uint8(7))
        );
        ledger.revealScores(taskId, 1, encoded, reasons, SALT);
    }

    function test_revealScores_acceptsExtremes() public {
        int256[] memory edge = _uniform(4, 10_000);
        edge[1] = -10_000;
        edge[2] = 0;
        edge[3] = -1;
        _commit(validatorAddrs[0], edge);
        _toReveal();
        _reveal(validatorAddrs[0], edge);
        (, int16[] memory got) = ledger.revealedScores(taskId, 1, validatorAddrs[0]);
        for (uint256 i; i < 4; ++i) {
            assertEq(int256(got[i]), edge[i], "extremes kept exactly");
        }
    }

    function test_revealScores_endsRevealPhaseWhenEveryCommitterRevealed() public {
        for (uint256 v; v < 2; ++v) {
            _commit(validatorAddrs[v], scores);
        }
        _toReveal(); // the commit window ran out with two of three committed
        _reveal(validatorAddrs[0], scores);
        assertFalse(_view().finalizable, "one committer still to reveal");
        _reveal(validatorAddrs[1], scores);
        IMeshLedger.RoundView memory r = _view();
        assertTrue(r.finalizable, "every committer revealed");
        assertEq(uint256(r.phase), uint256(IMeshLedger.Phase.Closed), "closed");
    }
}

/// Reveals of rounds with more than 16 updates: scores span several storage words.
contract MeshLedgerWideRevealTest is Fixture {
    function setUp() public override {
        _deploy(37, 3);
    }

    function test_revealScores_roundTripsAcrossWords() public {
        _submitAll();
        int256[] memory scores = new int256[](37);
        for (uint256 i; i < 37; ++i) {
            scores[i] = int256(i * 541 % 20_001) - 10_000;
            if (scores[i] == -10_000) scores[i] = -9_999;
        }
        _commit(validatorAddrs[0], scores);
        _toReveal();
        _reveal(validatorAddrs[0], scores);
        (bool revealed, int16[] memory got) = ledger.revealedScores(taskId, 1, validatorAddrs[0]);
        assertTrue(revealed, "revealed");
        assertEq(got.length, 37, "37 scores");
        for (uint256 i; i < 37; ++i) {
            assertEq(int256(got[i]), scores[i], "each score kept");
        }
    }
}
