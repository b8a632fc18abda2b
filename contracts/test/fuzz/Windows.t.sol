// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

import {IMeshLedger} from "../../src/interfaces/IMeshLedger.sol";
import {Fixture} from "../utils/Fixture.sol";

/// Windows and phases under fuzzed lengths, times and pauses: every deadline is ledger time.
contract WindowsFuzzTest is Fixture {
    function _task(uint32 s, uint32 c, uint32 r) internal returns (uint256 id) {
        IMeshLedger.TaskParams memory p = _params();
        p.submissionWindow = s;
        p.commitWindow = c;
        p.revealWindow = r;
        vm.prank(admin);
        id = ledger.createTask(p);
    }

    function testFuzz_phaseFollowsTheWindows(uint32 s, uint32 c, uint32 r, uint256 at) public {
        s = uint32(bound(s, 1, 30 days));
        c = uint32(bound(c, 1, 30 days));
        r = uint32(bound(r, 1, 30 days));
        taskId = _task(s, c, r);
        at = bound(at, 0, uint256(s) + c + r + 10);
        vm.warp(START_TIME + at);
        IMeshLedger.RoundView memory v = ledger.roundView(taskId, 1);
        IMeshLedger.Phase expected = at < s
            ? IMeshLedger.Phase.Open
            : at < uint256(s) + c ? IMeshLedger.Phase.Commit : IMeshLedger.Phase.Closed; // nobody committed
        assertEq(uint256(v.phase), uint256(expected), "phase");
        assertEq(v.submissionEnd, START_TIME + s, "submission end");
        assertEq(v.commitEnd, START_TIME + s + c, "commit end");
        assertEq(v.revealEnd, START_TIME + s + c + r, "reveal end");
    }

    /// A pause of any length shifts every deadline, in wall time, by exactly the time paused.
    function testFuzz_pauseShiftsDeadlinesByItsLength(uint256 pauseAt, uint256 pauseFor, uint256 probe) public {
        pauseAt = bound(pauseAt, 0, SUBMISSION_WINDOW - 1);
        pauseFor = bound(pauseFor, 1, 3 days - 1);
        vm.warp(START_TIME + pauseAt);
        vm.prank(admin);
        ledger.pause();
        vm.warp(START_TIME + pauseAt + pauseFor);
        vm.prank(admin);
        ledger.unpause();
        (uint64 ledgerNow,, uint64 pausedTotal) = ledger.clock();
        assertEq(pausedTotal, pauseFor, "paused total");
        assertEq(ledgerNow, START_TIME + pauseAt, "the clock resumed where it stopped");
        // Submissions stay open until wall time START + window + pauseFor.
        probe = bound(probe, START_TIME + pauseAt + pauseFor, START_TIME + SUBMISSION_WINDOW + pauseFor + 100);
        vm.warp(probe);
        bool open = probe < START_TIME + SUBMISSION_WINDOW + pauseFor;
        assertEq(uint256(_view().phase) == uint256(IMeshLedger.Phase.Open), open, "open exactly as long as before");
        if (open) {
            assertEq(_submit(0), 0, "and it accepts submissions");
        }
    }

    /// The commit window starts when submissions close early, and commits are accepted exactly inside it.
    function testFuzz_commitAcceptedExactlyInsideItsWindow(uint256 closeAt, uint256 at) public {
        closeAt = bound(closeAt, 0, SUBMISSION_WINDOW - 1);
        vm.warp(START_TIME + closeAt);
        _submitAll();
        at = bound(at, closeAt, closeAt + COMMIT_WINDOW + 10);
        vm.warp(START_TIME + at);
        bytes32 c = _commitment(validatorAddrs[0], _uniform(4, 1));
        vm.prank(validatorAddrs[0]);
        if (at < closeAt + COMMIT_WINDOW) {
            ledger.commitScores(taskId, 1, c);
            assertEq(_view().commitCount, 1, "committed");
        } else {
            vm.expectRevert(
                abi.encodeWithSelector(
                    IMeshLedger.MeshLedger_CommitClosed.selector, taskId, 1, uint64(START_TIME + closeAt + COMMIT_WINDOW)
                )
            );
            ledger.commitScores(taskId, 1, c);
        }
    }
}
