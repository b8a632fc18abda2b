// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

import {IMeshLedger} from "../../src/interfaces/IMeshLedger.sol";
import {Fixture} from "../utils/Fixture.sol";
import {Vm} from "../utils/Vm.sol";

/// finalizeRound: timing, the accepted-set check, the aggregate rule, reputation and rewards.
contract MeshLedgerFinalizeTest is Fixture {
    // Fixture: 4 contributors with 100..103 samples, 3 validators, quorum 2, budget 1000 tokens.
    uint256 internal constant SAMPLES_SUM = 100 + 101 + 102 + 103;

    function _finalizedSettlements() internal returns (IMeshLedger.Settlement[] memory settlements) {
        Vm.Log[] memory logs = vm.getRecordedLogs();
        bytes32 sig = IMeshLedger.RoundFinalized.selector;
        for (uint256 i; i < logs.length; ++i) {
            if (logs[i].topics[0] != sig) continue;
            (,,,, settlements) = abi.decode(logs[i].data, (bytes32, uint256, uint8, uint32, IMeshLedger.Settlement[]));
            return settlements;
        }
        revert("no RoundFinalized");
    }

    // ─── the happy path ───

    function test_finalizeRound_settlesReputationAndRewardsAndOpensNextRound() public {
        _submitAll();
        for (uint256 v; v < 3; ++v) {
            _voteAll(v, 0xf);
        }
        bytes32 agg = _aggregate(1);
        vm.recordLogs();
        vm.expectEmit(address(ledger));
        emit IMeshLedger.RoundOpened(taskId, 2, aggregator, agg, uint64(block.timestamp));
        _finalize(agg, 0xf);

        uint256 contributorShare = BUDGET - BUDGET / 10;
        uint256 minted;
        for (uint256 i; i < 4; ++i) {
            uint256 expected = contributorShare * (100 + i) / SAMPLES_SUM; // equal reputations
            assertEq(token.balanceOf(contributors[i]), expected, "contributor reward by samples");
            (uint32 rep,) = ledger.reputation(contributors[i]);
            assertEq(rep, 5_500, "accepted: +500");
            minted += expected;
        }
        for (uint256 v; v < 3; ++v) {
            assertEq(token.balanceOf(validatorAddrs[v]), BUDGET / 10 / 3, "validators share equally");
            (, uint32 rep) = ledger.reputation(validatorAddrs[v]);
            assertEq(rep, 5_200, "agreed: +200");
            minted += BUDGET / 10 / 3;
        }
        assertEq(token.totalSupply(), minted, "supply is the sum of rewards");
        assertLe(BUDGET - minted, 7, "dust below one unit per recipient");

        IMeshLedger.Settlement[] memory s = _finalizedSettlements();
        assertEq(s.length, 7, "four contributors then three validators");
        assertEq(s[0].account, contributors[0], "update order");
        assertEq(uint8(s[0].role), uint8(IMeshLedger.Role.Contributor), "role");
        assertEq(s[0].reputation, 5_500, "new reputation");
        assertEq(s[0].reward, token.balanceOf(contributors[0]), "reward logged = minted");
        assertEq(s[4].account, validatorAddrs[0], "validators after contributors");
        assertEq(uint8(s[6].role), uint8(IMeshLedger.Role.Validator), "validator role");

        assertEq(_round(), 2, "next round");
        assertEq(ledger.baseDigest(taskId, 2), agg, "base is the aggregate");
        assertEq(ledger.aggregateDigest(taskId, 1), agg, "lineage kept");
        IMeshLedger.RoundView memory r = ledger.roundView(taskId, 2);
        assertEq(uint8(r.phase), uint8(IMeshLedger.Phase.Open), "open");
        assertEq(r.openedAt, block.timestamp, "opened now");
        assertEq(r.submissionCount, 0, "empty");
    }

    function test_finalizeRound_emitsRoundFinalizedWithRuleAndBitmap() public {
        _submitAll();
        for (uint256 v; v < 3; ++v) {
            _voteAll(v, 0x7);
        }
        bytes32 agg = _aggregate(1);
        vm.recordLogs();
        _finalize(agg, 0x7);
        Vm.Log[] memory logs = vm.getRecordedLogs();
        bool found;
        for (uint256 i; i < logs.length; ++i) {
            if (logs[i].topics[0] != IMeshLedger.RoundFinalized.selector) continue;
            found = true;
            assertEq(logs[i].topics[1], bytes32(taskId), "task topic");
            assertEq(logs[i].topics[2], bytes32(uint256(1)), "round topic");
            assertEq(logs[i].topics[3], bytes32(uint256(uint160(aggregator))), "aggregator topic");
            (bytes32 d, uint256 bitmap, uint8 rule, uint32 param,) =
                abi.decode(logs[i].data, (bytes32, uint256, uint8, uint32, IMeshLedger.Settlement[]));
            assertEq(d, agg, "aggregate");
            assertEq(bitmap, 0x7, "accepted set");
            assertEq(rule, 0, "rule");
            assertEq(param, 0, "rule param");
        }
        assertTrue(found, "RoundFinalized emitted");
    }

    function test_finalizeRound_rejectedUpdateLosesReputationAndReward() public {
        _submitAll();
        for (uint256 v; v < 3; ++v) {
            _voteAll(v, 0x7); // update 3 rejected by all
        }
        _finalize(_aggregate(1), 0x7);
        assertEq(token.balanceOf(contributors[3]), 0, "no reward");
        (uint32 rep,) = ledger.reputation(contributors[3]);
        assertEq(rep, 3_500, "rejected: -1500");
        uint256 share = BUDGET - BUDGET / 10;
        assertEq(token.balanceOf(contributors[0]), share * 100 / 303, "split over the accepted");
    }

    function test_finalizeRound_dissentingValidatorLosesReputationAndReward() public {
        _submitAll();
        _voteAll(0, 0xf);
        _voteAll(1, 0xf);
        _voteAll(2, 0x7); // outvoted on update 3
        _finalize(_aggregate(1), 0xf);
        (, uint32 rep) = ledger.reputation(validatorAddrs[2]);
        assertEq(rep, 4_000, "disagreed: -1000");
        assertEq(token.balanceOf(validatorAddrs[2]), 0, "no reward");
        assertEq(token.balanceOf(validatorAddrs[0]), BUDGET / 10 / 2, "the others share");
    }

    function test_finalizeRound_partialVoterKeepsReputationUpButEarnsNothing() public {
        _submitAll();
        _voteAll(0, 0xf);
        _voteAll(1, 0xf);
        vm.prank(validatorAddrs[2]);
        ledger.vote(taskId, 1, 0, true, 0);
        _afterVoteWindow();
        _finalize(_aggregate(1), 0xf);
        (, uint32 rep) = ledger.reputation(validatorAddrs[2]);
        assertEq(rep, 5_200, "voted with the outcome");
        assertEq(token.balanceOf(validatorAddrs[2]), 0, "did not vote on every update");
    }

    function test_finalizeRound_silentValidatorUnchangedAndUnlisted() public {
        _submitAll();
        _voteAll(0, 0xf);
        _voteAll(1, 0xf);
        _afterVoteWindow();
        vm.recordLogs();
        _finalize(_aggregate(1), 0xf);
        (, uint32 rep) = ledger.reputation(validatorAddrs[2]);
        assertEq(rep, 5_000, "unchanged");
        assertEq(_finalizedSettlements().length, 6, "silent validator not settled");
    }

    function test_finalizeRound_belowQuorumIsRejected() public {
        _submitAll();
        _voteAll(0, 0x1);
        _voteAll(1, 0x2);
        _voteAll(2, 0x3); // update 0: 2 votes, 1: 2 votes, 2 and 3: none
        _finalize(_aggregate(1), 0x3);
        assertEq(token.balanceOf(contributors[2]), 0, "rejected");
        (uint32 rep,) = ledger.reputation(contributors[2]);
        assertEq(rep, 3_500, "rejected");
    }

    function test_finalizeRound_revokedValidatorsVotesDoNotCount() public {
        _submitAll();
        _voteAll(0, 0xf);
        _voteAll(1, 0xf);
        _voteAll(2, 0x0);
        vm.prank(admin);
        ledger.revokeRole(VALIDATOR, validatorAddrs[1]);
        // Only validators 0 and 2 count now: one accept each, below quorum 2.
        _finalize(GENESIS, 0);
        assertEq(token.balanceOf(validatorAddrs[1]), 0, "revoked: not settled");
        (, uint32 rep) = ledger.reputation(validatorAddrs[1]);
        assertEq(rep, 5_000, "revoked: unchanged");
    }

    function test_finalizeRound_roundsDownAndNeverMintsDust() public {
        IMeshLedger.TaskParams memory p = _params();
        p.rewardPerRound = 10; // validators 1, contributors 9 over 4 equal weights
        vm.prank(admin);
        taskId = ledger.createTask(p);
        for (uint256 i; i < 4; ++i) {
            _submitAs(contributors[i], 1, _digest(i), 7);
        }
        for (uint256 v; v < 3; ++v) {
            _voteAll(v, 0xf);
        }
        _finalize(_aggregate(1), 0xf);
        for (uint256 i; i < 4; ++i) {
            assertEq(token.balanceOf(contributors[i]), 2, "9 / 4 rounded down");
        }
        assertEq(token.balanceOf(validatorAddrs[0]), 0, "1 / 3 rounded down");
        assertEq(token.totalSupply(), 8, "dust of 2 never minted");
    }

    function test_finalizeRound_zeroBudgetMintsNothing() public {
        IMeshLedger.TaskParams memory p = _params();
        p.rewardPerRound = 0;
        vm.prank(admin);
        taskId = ledger.createTask(p);
        _playRound(0);
        assertEq(token.totalSupply(), 0, "nothing minted");
        (uint32 rep,) = ledger.reputation(contributors[0]);
        assertEq(rep, 5_500, "reputation still moves");
    }

    function test_finalizeRound_reputationWeightsRewards() public {
        _playRound(0x8); // contributor 3 rejected in round 1: reputation 3500
        uint256 before = token.balanceOf(contributors[3]);
        _submitAll();
        for (uint256 v; v < 3; ++v) {
            _voteAll(v, 0xf);
        }
        uint256 b0 = token.balanceOf(contributors[0]);
        _finalize(_aggregate(2), 0xf);
        uint256 share = BUDGET - BUDGET / 10;
        uint256 total = 100 * 5_500 + 101 * 5_500 + 102 * 5_500 + 103 * 3_500;
        assertEq(token.balanceOf(contributors[0]) - b0, share * 100 * 5_500 / total, "weight samples x reputation");
        assertEq(token.balanceOf(contributors[3]) - before, share * 103 * 3_500 / total, "lower weight");
    }

    function test_finalizeRound_contributorReputationFloorsAtMinimum() public {
        uint32[5] memory expected = [uint32(3_500), 2_000, 500, 100, 100];
        for (uint256 r; r < 5; ++r) {
            _playRound(0x8); // contributor 3 rejected every round
            (uint32 rep,) = ledger.reputation(contributors[3]);
            assertEq(rep, expected[r], "down 1500 a round, never below REPUTATION_MIN");
        }
    }

    function test_finalizeRound_contributorReputationCapsAtMaximum() public {
        for (uint256 r; r < 11; ++r) {
            _playRound(0);
        }
        (uint32 rep,) = ledger.reputation(contributors[0]);
        assertEq(rep, ledger.REPUTATION_MAX(), "5000 + 11 x 500 capped at 10000");
    }

    function test_finalizeRound_validatorReputationFloorsAtMinimum() public {
        for (uint256 r; r < 6; ++r) {
            _submitAll();
            _voteAll(0, 0xf);
            _voteAll(1, 0xf);
            _voteAll(2, 0x0); // always outvoted
            _finalize(_aggregate(_round()), 0xf);
        }
        (, uint32 rep) = ledger.reputation(validatorAddrs[2]);
        assertEq(rep, ledger.REPUTATION_MIN(), "5000 - 6 x 1000 floored at 100");
    }

    function test_finalizeRound_emptyRoundCarriesBaseOver() public {
        vm.warp(START_TIME + SUBMISSION_WINDOW); // submissions closed with none in: nothing to vote on
        vm.recordLogs();
        _finalize(GENESIS, 0);
        assertEq(_finalizedSettlements().length, 0, "nobody settled");
        assertEq(token.totalSupply(), 0, "nothing minted");
        assertEq(ledger.baseDigest(taskId, 2), GENESIS, "model carried over");
    }

    // ─── timing ───

    function test_finalizeRound_allowedEarlyOnceClosedAndAllVoted() public {
        _submitAll(); // closes early
        for (uint256 v; v < 3; ++v) {
            _voteAll(v, 0xf);
        }
        assertTrue(ledger.roundView(taskId, 1).finalizable, "finalizable");
        _finalize(_aggregate(1), 0xf);
        assertEq(_round(), 2, "finalized before the windows ended");
    }

    function test_finalizeRound_revertsEarlyWhileAValidatorHasNotVoted() public {
        _submitAll();
        _voteAll(0, 0xf);
        _voteAll(1, 0xf);
        uint64 voteEnd = uint64(block.timestamp + VOTE_WINDOW);
        bytes32 agg = _aggregate(1);
        vm.prank(aggregator);
        vm.expectRevert(abi.encodeWithSelector(IMeshLedger.MeshLedger_FinalizeTooEarly.selector, taskId, 1, voteEnd));
        ledger.finalizeRound(taskId, 1, agg, 0xf);
    }

    function test_finalizeRound_revertsWhileSubmissionsOpenEvenIfAllVoted() public {
        _submit(0);
        for (uint256 v; v < 3; ++v) {
            _voteAll(v, 0x1);
        }
        uint64 voteEnd = uint64(START_TIME + SUBMISSION_WINDOW + VOTE_WINDOW);
        bytes32 agg = _aggregate(1);
        vm.prank(aggregator);
        vm.expectRevert(abi.encodeWithSelector(IMeshLedger.MeshLedger_FinalizeTooEarly.selector, taskId, 1, voteEnd));
        ledger.finalizeRound(taskId, 1, agg, 0x1);
    }

    function test_finalizeRound_allowedAfterVoteWindowWithMissingVotes() public {
        _submit(0);
        _voteAll(0, 0x1);
        vm.warp(START_TIME + SUBMISSION_WINDOW + VOTE_WINDOW);
        _finalize(GENESIS, 0); // one accept < quorum: rejected
        assertEq(_round(), 2, "finalized");
    }

    // ─── checks ───

    function test_finalizeRound_revertsWhenNotAggregator() public {
        vm.warp(START_TIME + SUBMISSION_WINDOW + VOTE_WINDOW);
        vm.prank(stranger);
        vm.expectRevert(abi.encodeWithSelector(IMeshLedger.MeshLedger_NotAggregator.selector, stranger));
        ledger.finalizeRound(taskId, 1, GENESIS, 0);
    }

    function test_finalizeRound_revertsOnUnknownTask() public {
        vm.prank(aggregator);
        vm.expectRevert(abi.encodeWithSelector(IMeshLedger.MeshLedger_UnknownTask.selector, 5));
        ledger.finalizeRound(5, 1, GENESIS, 0);
    }

    function test_finalizeRound_revertsOnWrongRound() public {
        vm.prank(aggregator);
        vm.expectRevert(abi.encodeWithSelector(IMeshLedger.MeshLedger_WrongRound.selector, taskId, 1, 2));
        ledger.finalizeRound(taskId, 2, GENESIS, 0);
    }

    function test_finalizeRound_revertsOnSecondFinalization() public {
        _playRound(0);
        bytes32 agg = _aggregate(1);
        vm.prank(aggregator);
        vm.expectRevert(abi.encodeWithSelector(IMeshLedger.MeshLedger_WrongRound.selector, taskId, 2, 1));
        ledger.finalizeRound(taskId, 1, agg, 0xf);
    }

    function test_finalizeRound_revertsOnAcceptedSetMismatch() public {
        _submitAll();
        for (uint256 v; v < 3; ++v) {
            _voteAll(v, 0x7);
        }
        bytes32 agg = _aggregate(1);
        vm.prank(aggregator);
        vm.expectRevert(
            abi.encodeWithSelector(IMeshLedger.MeshLedger_AcceptedSetMismatch.selector, taskId, 1, 0x7, 0xf)
        );
        ledger.finalizeRound(taskId, 1, agg, 0xf);
    }

    function test_finalizeRound_revertsOnBitsBeyondSubmissions() public {
        _submitAll();
        for (uint256 v; v < 3; ++v) {
            _voteAll(v, 0xf);
        }
        bytes32 agg = _aggregate(1);
        vm.prank(aggregator);
        vm.expectRevert(
            abi.encodeWithSelector(IMeshLedger.MeshLedger_AcceptedSetMismatch.selector, taskId, 1, 0xf, 0x1f)
        );
        ledger.finalizeRound(taskId, 1, agg, 0x1f);
    }

    function test_finalizeRound_revertsWhenNothingAcceptedAndAggregateNotBase() public {
        _submitAll();
        for (uint256 v; v < 3; ++v) {
            _voteAll(v, 0);
        }
        bytes32 agg = _aggregate(1);
        vm.prank(aggregator);
        vm.expectRevert(abi.encodeWithSelector(IMeshLedger.MeshLedger_AggregateMustBeBase.selector, GENESIS, agg));
        ledger.finalizeRound(taskId, 1, agg, 0);
    }

    function test_finalizeRound_revertsOnZeroAggregate() public {
        _submitAll();
        for (uint256 v; v < 3; ++v) {
            _voteAll(v, 0xf);
        }
        vm.prank(aggregator);
        vm.expectRevert(abi.encodeWithSelector(IMeshLedger.MeshLedger_InvalidDigest.selector, bytes32(0)));
        ledger.finalizeRound(taskId, 1, bytes32(0), 0xf);
    }
}
