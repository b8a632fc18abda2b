// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

import {IAccessControl} from "@openzeppelin/contracts/access/IAccessControl.sol";

import {IMeshLedger} from "../../src/interfaces/IMeshLedger.sol";
import {Fixture} from "../utils/Fixture.sol";

/// The bounded pause and the ledger clock (R6: a pause freezes every window; it lapses; a cooldown follows).
contract MeshLedgerPauseTest is Fixture {
    uint64 internal constant MAX_PAUSE = 3 days;

    function _pause() internal {
        vm.prank(admin);
        ledger.pause();
    }

    function _unpause() internal {
        vm.prank(admin);
        ledger.unpause();
    }

    function test_maxPause_isThreeDays() public view {
        assertEq(ledger.MAX_PAUSE(), MAX_PAUSE, "MAX_PAUSE");
    }

    function test_pause_stopsSubmissionsCommitsRevealsAndFinalization() public {
        _submit(0);
        _pause();
        assertTrue(ledger.paused(), "paused");
        bytes memory paused = abi.encodeWithSelector(IMeshLedger.MeshLedger_Paused.selector, uint64(block.timestamp) + MAX_PAUSE);
        uint32 round = _round();
        bytes32 digest = _digest(1);

        vm.prank(contributors[1]);
        vm.expectRevert(paused);
        ledger.submitUpdate(taskId, round, digest, 1);

        IMeshLedger.SignedSubmission memory sub = _signed(2, 10, 0, uint64(block.timestamp + 1 hours));
        vm.expectRevert(paused);
        ledger.submitUpdateFor(taskId, round, sub);

        IMeshLedger.SignedSubmission[] memory subs = new IMeshLedger.SignedSubmission[](1);
        subs[0] = sub;
        vm.expectRevert(paused);
        ledger.submitUpdatesFor(taskId, round, subs);

        vm.startPrank(validatorAddrs[0]);
        vm.expectRevert(paused);
        ledger.commitScores(taskId, round, keccak256("c"));
        vm.expectRevert(paused);
        ledger.revealScores(taskId, round, hex"0000", hex"00", SALT);
        vm.stopPrank();

        vm.prank(aggregator);
        vm.expectRevert(paused);
        ledger.finalizeRound(taskId, round, GENESIS);
        vm.prank(stranger);
        vm.expectRevert(paused);
        ledger.finalizeCarryOver(taskId, round);
    }

    /// "Why" 6: time spent paused does not count. Warp far past every window during the pause: after the
    /// unpause the round stands where it stood, and every window is still open for its full remaining time.
    function test_pause_freezesEveryWindow() public {
        vm.warp(START_TIME + 20 minutes); // 40 minutes of submissions left
        _submit(0);
        IMeshLedger.RoundView memory before = _view();
        _pause();
        vm.warp(block.timestamp + 2 days); // far beyond the submission, commit, reveal and grace windows
        (uint64 ledgerNow, uint64 pausedAt,) = ledger.clock();
        assertEq(ledgerNow, START_TIME + 20 minutes, "the ledger clock stopped");
        assertEq(pausedAt, START_TIME + 20 minutes, "since the pause");
        _unpause();
        IMeshLedger.RoundView memory afterwards = _view();
        assertEq(uint256(afterwards.phase), uint256(IMeshLedger.Phase.Open), "still open for submissions");
        assertEq(afterwards.submissionEnd, before.submissionEnd, "same end, in ledger time");
        (ledgerNow,,) = ledger.clock();
        assertEq(ledgerNow, START_TIME + 20 minutes, "resumes where it stood");
        // 39 minutes of wall time later the window is still open, at 40 it is closed.
        vm.warp(block.timestamp + 39 minutes);
        _submit(1);
        vm.warp(block.timestamp + 1 minutes);
        bytes32 digest = _digest(2);
        vm.prank(contributors[2]);
        vm.expectRevert(
            abi.encodeWithSelector(IMeshLedger.MeshLedger_SubmissionsClosed.selector, taskId, 1, before.submissionEnd)
        );
        ledger.submitUpdate(taskId, 1, digest, 1);
    }

    function test_pause_duringCommitKeepsCommitWindow() public {
        _submitAll();
        int256[][] memory rows = _sameScores(3_000);
        _commit(validatorAddrs[0], rows[0]);
        _pause();
        vm.warp(block.timestamp + 1 days);
        _unpause();
        _commit(validatorAddrs[1], rows[1]); // 30 minutes of commit window were left, and still are
        assertEq(_view().commitCount, 2, "late by wall time, on time by ledger time");
    }

    function test_pause_lapsesAfterMaxPause() public {
        _pause();
        vm.warp(block.timestamp + MAX_PAUSE - 1);
        assertTrue(ledger.paused(), "still paused");
        vm.warp(block.timestamp + 1);
        assertFalse(ledger.paused(), "lapsed by itself");
        (uint64 ledgerNow, uint64 pausedAt, uint64 pausedTotal) = ledger.clock();
        assertEq(ledgerNow, START_TIME, "the clock ran again from where it stopped");
        assertEq(pausedAt, 0, "not paused");
        assertEq(pausedTotal, MAX_PAUSE, "the lapsed pause counts MAX_PAUSE");
        assertEq(_submit(0), 0, "submissions resume without the admin");
        vm.prank(admin);
        vm.expectRevert(IMeshLedger.MeshLedger_NotPaused.selector);
        ledger.unpause();
    }

    function test_pause_cooldownAfterUnpause() public {
        _pause();
        vm.warp(block.timestamp + 1 hours);
        _unpause();
        uint64 pausableAt = uint64(_wallNow()) + MAX_PAUSE;
        vm.warp(pausableAt - 1);
        vm.prank(admin);
        vm.expectRevert(
            abi.encodeWithSelector(IMeshLedger.MeshLedger_PauseCooldown.selector, pausableAt, pausableAt - 1)
        );
        ledger.pause();
        vm.warp(pausableAt);
        _pause();
        assertTrue(ledger.paused(), "paused again after the cooldown");
        (, , uint64 pausedTotal) = ledger.clock();
        assertEq(pausedTotal, 1 hours, "the first pause, folded");
    }

    function test_pause_cooldownAfterLapse() public {
        uint256 start = _wallNow();
        _pause();
        vm.warp(start + 2 * MAX_PAUSE - 1); // lapsed at start + MAX_PAUSE; cooldown until start + 2 MAX_PAUSE
        vm.prank(admin);
        vm.expectRevert(
            abi.encodeWithSelector(
                IMeshLedger.MeshLedger_PauseCooldown.selector, uint64(start + 2 * MAX_PAUSE), start + 2 * MAX_PAUSE - 1
            )
        );
        ledger.pause();
        vm.warp(start + 2 * MAX_PAUSE);
        _pause();
        (uint64 ledgerNow,, uint64 pausedTotal) = ledger.clock();
        assertEq(pausedTotal, MAX_PAUSE, "the lapsed pause, folded");
        assertEq(ledgerNow, start + MAX_PAUSE, "wall time minus the first pause");
    }

    /// The admin can halt the ledger at most half of any period: pause, lapse, cooldown, pause...
    function test_pause_haltsAtMostHalfTheTime() public {
        uint256 start = _wallNow();
        for (uint256 i; i < 5; ++i) {
            _pause();
            vm.warp(block.timestamp + 2 * MAX_PAUSE); // lapse, then wait out the cooldown
        }
        (uint64 ledgerNow,,) = ledger.clock();
        assertEq(ledgerNow - start, 5 * MAX_PAUSE, "the ledger ran half of the wall time");
    }

    function test_pause_revertsWhenPausedOrNotAdmin() public {
        _pause();
        vm.prank(admin);
        vm.expectRevert(abi.encodeWithSelector(IMeshLedger.MeshLedger_Paused.selector, uint64(block.timestamp) + MAX_PAUSE));
        ledger.pause();
        vm.prank(stranger);
        vm.expectRevert(
            abi.encodeWithSelector(IAccessControl.AccessControlUnauthorizedAccount.selector, stranger, ADMIN_ROLE)
        );
        ledger.unpause();
        vm.prank(stranger);
        vm.expectRevert(
            abi.encodeWithSelector(IAccessControl.AccessControlUnauthorizedAccount.selector, stranger, ADMIN_ROLE)
        );
        ledger.pause();
    }

    function test_unpause_revertsWhenNotPaused() public {
        vm.prank(admin);
        vm.expectRevert(IMeshLedger.MeshLedger_NotPaused.selector);
        ledger.unpause();
    }

    function test_pause_emitsEvents() public {
        vm.expectEmit(address(ledger));
        emit IMeshLedger.Paused(admin);
        _pause();
        vm.expectEmit(address(ledger));
        emit IMeshLedger.Unpaused(admin);
        _unpause();
    }

    function test_graceCountsLedgerTimeToo() public {
        _submitAll();
        _scoreRound(_sameScores(1_000));
        uint64 graceEnd = _view().graceEnd;
        vm.warp(_wallOf(graceEnd) - 10);
        _pause();
        vm.warp(block.timestamp + 1 days);
        _unpause();
        vm.prank(stranger);
        vm.expectRevert(
            abi.encodeWithSelector(IMeshLedger.MeshLedger_GraceNotOver.selector, taskId, 1, graceEnd, graceEnd - 10)
        );
        ledger.finalizeCarryOver(taskId, 1);
    }
}
