// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

import {IMeshLedger} from "../../src/interfaces/IMeshLedger.sol";
import {Fixture} from "../utils/Fixture.sol";

/// finalizeRound, finalizeCarryOver and claimRewards: consensus (R4), settlement (R5), liveness (R6).
contract MeshLedgerFinalizeTest is Fixture {
    /// Three validators of equal weight score four updates; the consensus is each update's middle score.
    function _scenario() internal pure returns (int256[][] memory rows) {
        rows = new int256[][](3);
        rows[0] = new int256[](4);
        rows[1] = new int256[](4);
        rows[2] = new int256[](4);
        (rows[0][0], rows[0][1], rows[0][2], rows[0][3]) = (6_000, -2_000, 10_000, 0);
        (rows[1][0], rows[1][1], rows[1][2], rows[1][3]) = (4_000, 1_000, -10_000, 500);
        (rows[2][0], rows[2][1], rows[2][2], rows[2][3]) = (5_000, -3_000, 2_000, -500);
    }

    function _expectedSettlements() internal view returns (IMeshLedger.Settlement[] memory out) {
        out = new IMeshLedger.Settlement[](7);
        // Consensus (5000, -2000, 2000, 0): weights c² × 5000 for the accepted updates 0 and 2, i.e. 125 : 20.
        out[0] = IMeshLedger.Settlement(contributors[0], IMeshLedger.Role.Contributor, 5_250, uint256(900 ether) * 125 / 145, 5_000, 0, false);
        out[1] = IMeshLedger.Settlement(contributors[1], IMeshLedger.Role.Contributor, 4_700, 0, -2_000, 0, false);
        out[2] = IMeshLedger.Settlement(contributors[2], IMeshLedger.Role.Contributor, 5_100, uint256(900 ether) * 20 / 145, 2_000, 0, false);
        out[3] = IMeshLedger.Settlement(contributors[3], IMeshLedger.Role.Contributor, 5_000, 0, 0, 0, false);
        // Distances 2250, 3625 (the 12000 gap capped at 10000), 375: their (upper) median 2250, tolerance
        // 3 × 2250 = 6750, all within it (+200). Pay (anti-lazy): no contributor has a consensus yet, so the public
        // record predicts 0 for each: its distance (5000 + 2000 + 2000 + 0) / 4 = 2250, the pay tolerance
        // min(6750, 2250) = 2250; agreements 0, 0 and (2250 - 375) × 10^4 / 2250 = 8333: validator 2 takes it all.
        out[4] = IMeshLedger.Settlement(validatorAddrs[0], IMeshLedger.Role.Validator, 5_200, 0, 0, 2_250, false);
        out[5] = IMeshLedger.Settlement(validatorAddrs[1], IMeshLedger.Role.Validator, 5_200, 0, 0, 3_625, false);
        out[6] = IMeshLedger.Settlement(validatorAddrs[2], IMeshLedger.Role.Validator, 5_200, uint256(100 ether), 0, 375, false);
    }

    function test_finalizeRound_settlesByConsensusExactly() public {
        _submitAll();
        _scoreRound(_scenario());
        (int16[] memory consensus, uint256 accepted) = ledger.tally(taskId, 1);
        assertEq(int256(consensus[0]), 5_000, "middle score");
        assertEq(int256(consensus[1]), -2_000, "negative");
        assertEq(int256(consensus[2]), 2_000, "a hard reject is outvoted");
        assertEq(int256(consensus[3]), 0, "zero");
        assertEq(accepted, 5, "consensus > 0 accepted: updates 0 and 2");

        IMeshLedger.Settlement[] memory expected = _expectedSettlements();
        vm.expectEmit(address(ledger));
        emit IMeshLedger.RoundFinalized(taskId, 1, aggregator, _aggregate(1), 5, 0, 0, false, expected);
        _finalize(_aggregate(1));
        for (uint256 j; j < expected.length; ++j) {
            IMeshLedger.AccountView memory a = ledger.account(expected[j].account);
            assertEq(a.accrued, expected[j].reward, "accrued = settled reward");
            uint32 rep = j < 4 ? a.contributorReputation : a.validatorReputation;
            assertEq(rep, expected[j].reputation, "reputation = settled");
        }
    }

    function test_finalizeRound_weightsCountInTheMedian() public {
        _deploy(4, 4);
        // Round 1: validator 3 stays absent (-500), the others agree (+200): weights 5200, 5200, 5200, 4500.
        _submitAll();
        int256[][] memory rows = _sameScores(5_000);
        rows[3] = new int256[](0);
        _scoreRound(rows);
        _finalize(_aggregate(1));
        (, uint16[] memory weights,,) = ledger.validatorSet(taskId, 2);
        assertEq(weights[0], 5_200, "agreeing validator's weight");
        assertEq(weights[3], 4_500, "absent validator's weight");
        // Round 2: -100 by validators 0 and 3 (9700), 9000 by validators 1 and 2 (10400 of 20100): the heavier
        // side is the median, where equal weights would have given -100.
        _submitAll();
        rows = _sameScores(9_000);
        rows[0] = _uniform(4, -100);
        rows[3] = _uniform(4, -100);
        _scoreRound(rows);
        (int16[] memory consensus, uint256 accepted) = ledger.tally(taskId, 2);
        assertEq(int256(consensus[0]), 9_000, "the weighted median");
        assertEq(accepted, 15, "all accepted");
    }

    /// R5: a validator is measured against the round's median distance, so one that always rejects lands far
    /// outside the tolerance (loses, earns nothing) while honest ones that differ a little are all paid.
    function test_finalizeRound_farFromTheMedianDistanceLosesAndEarnsNothing() public {
        _deploy(4, 4);
        _submitAll();
        int256[][] memory rows = _sameScores(6_000);
        rows[1] = _uniform(4, 6_300);
        rows[2] = _uniform(4, 5_800);
        rows[3] = _uniform(4, -10_000);
        _scoreRound(rows);
        _finalize(_aggregate(1));
        // Consensus 5800; distances 200, 500, 0, 10000 (capped); median 200, tolerance 600.
        IMeshLedger.AccountView memory far = ledger.account(validatorAddrs[3]);
        assertEq(far.validatorReputation, 4_000, "far outside the tolerance: -1000");
        assertEq(far.accrued, 0, "agreement 0 earns nothing");
        IMeshLedger.AccountView memory near = ledger.account(validatorAddrs[1]);
        assertEq(near.validatorReputation, 5_200, "within the tolerance: +200");
        assertLt(0, near.accrued, "paid by its agreement");
    }

    /// R5 anti-lazy: a validator that copies each contributor's previous consensus (the public record) is paid
    /// nothing, even when the consensus barely moved and the copy lies well within the tolerance; the honest
    /// validators that beat the record share the validators' pay. (The rule before paid it 1/6 of an agreement.)
    function test_finalizeRound_lazyCopyOfTheLastConsensusEarnsNothing() public {
        _submitAll();
        _scoreRound(_sameScores(5_000));
        _finalize(_aggregate(1));
        uint256 lazyBefore = ledger.account(validatorAddrs[2]).accrued;
        _submitAll();
        int256[][] memory rows = _sameScores(5_000); // validator 2 copies round 1's consensus
        rows[0] = _uniform(4, 5_600);
        rows[1] = _uniform(4, 5_500);
        _scoreRound(rows);
        (int16[] memory consensus,) = ledger.tally(taskId, 2);
        assertEq(int256(consensus[0]), 5_500, "the middle score");
        _finalize(_aggregate(2));
        // Distances 100, 0, 500; tolerance 3 × max(200, 100) = 600: the copy keeps its reputation (+200) ...
        IMeshLedger.AccountView memory lazy = ledger.account(validatorAddrs[2]);
        assertEq(lazy.validatorReputation, 5_400, "within the tolerance: no reputation lost");
        // ... but the record's distance is 500, exactly the copy's: agreement 0 against min(600, 500).
        assertEq(lazy.accrued, lazyBefore, "a copy of the public record earns nothing");
        assertLt(ledger.account(validatorAddrs[0]).accrued, ledger.account(validatorAddrs[1]).accrued, "closer earns more");
        assertLt(0, ledger.account(validatorAddrs[0]).accrued, "an honest validator beating the record is paid");
    }

    /// R5: with a validator absent the consensus is one revealer's own score (distance 0); the tolerance comes
    /// from the UPPER median of the revealed distances, so the other honest revealer 1,000 away is still within
    /// it and paid. (The lower median was 0, the floor gave 600, and it lost 666 reputation and earned nothing.)
    function test_finalizeRound_absentValidatorDoesNotSinkTheOtherHonestOne() public {
        _submitAll();
        int256[][] memory rows = new int256[][](3);
        rows[0] = _uniform(4, 6_000);
        rows[1] = _uniform(4, 7_000);
        _scoreRound(rows);
        (int16[] memory consensus, uint256 accepted) = ledger.tally(taskId, 1);
        assertEq(int256(consensus[0]), 6_000, "median of (0 absent, 6000, 7000)");
        assertEq(accepted, 15, "all accepted");
        _finalize(_aggregate(1));
        IMeshLedger.AccountView memory other = ledger.account(validatorAddrs[1]);
        assertEq(other.validatorReputation, 5_200, "distance 1000 within 3 x 1000");
        assertLt(0, other.accrued, "and paid");
        assertEq(ledger.account(validatorAddrs[2]).validatorReputation, 4_500, "the absent one: -500");
    }

    /// An absent validator counts as a score of 0 with its weight: absence never makes acceptance easier.
    function test_finalizeRound_absentCountsAsZero() public {
        IMeshLedger.TaskParams memory p = _params();
        p.quorum = 1;
        vm.prank(admin);
        taskId = ledger.createTask(p);
        _submitAll();
        int256[][] memory rows = new int256[][](3);
        rows[0] = _uniform(4, 8_000);
        _scoreRound(rows);
        (int16[] memory consensus, uint256 accepted) = ledger.tally(taskId, 1);
        assertEq(int256(consensus[0]), 0, "two absent of three: the median is 0");
        assertEq(accepted, 0, "nothing accepted on one validator's say");
    }

    /// "Why" 4: no reveal is absent — it loses ABSENT_LOSS and earns nothing, whether it committed or not.
    function test_finalizeRound_absentValidatorsLoseAndEarnNothing() public {
        _submitAll();
        int256[][] memory rows = _sameScores(5_000);
        _toCommit();
        _commit(validatorAddrs[0], rows[0]);
        _commit(validatorAddrs[1], rows[1]); // commits and never reveals
        // validator 2 never commits
        _toReveal();
        _reveal(validatorAddrs[0], rows[0]);
        _toRevealEnd();
        _finalize(ledger.baseDigest(taskId, 1)); // one reveal < quorum 2: nothing accepted
        for (uint256 v = 1; v < 3; ++v) {
            IMeshLedger.AccountView memory a = ledger.account(validatorAddrs[v]);
            assertEq(a.validatorReputation, 4_500, "absent: -500");
            assertEq(a.accrued, 0, "absent: no reward");
        }
        // Below quorum the contributors were not judged: no reputation moved, nobody was paid.
        for (uint256 i; i < 4; ++i) {
            IMeshLedger.AccountView memory a = ledger.account(contributors[i]);
            assertEq(a.contributorReputation, 5_000, "unchanged below quorum");
            assertEq(a.accrued, 0, "unpaid below quorum");
        }
        // The one validator that revealed did its part: below quorum its reputation does not move and, as nobody
        // is paid below quorum, it earns nothing (it would otherwise be its own median and take the whole share).
        IMeshLedger.AccountView memory v0 = ledger.account(validatorAddrs[0]);
        assertEq(v0.validatorReputation, 5_000, "revealer unchanged below quorum");
        assertEq(v0.accrued, 0, "nobody is paid below quorum");
    }

    function test_finalizeRound_revertsBeforeRevealPhaseEnds() public {
        _submitAll();
        int256[][] memory rows = _sameScores(5_000);
        _toCommit();
        for (uint256 v; v < 3; ++v) {
            _commit(validatorAddrs[v], rows[v]);
        }
        _reveal(validatorAddrs[0], rows[0]);
        uint64 revealEnd = _view().revealEnd;
        vm.prank(aggregator);
        vm.expectRevert(abi.encodeWithSelector(IMeshLedger.MeshLedger_FinalizeTooEarly.selector, taskId, 1, revealEnd));
        ledger.finalizeRound(taskId, 1, _aggregate(1));
        vm.warp(revealEnd);
        _finalize(GENESIS); // the window is over: the two missing reveals are absent, below quorum
        assertEq(_round(), 2, "finalized");
    }

    function test_finalizeRound_revertsWhenNotAggregator() public {
        _submitAll();
        _scoreRound(_sameScores(5_000));
        vm.prank(admin);
        vm.expectRevert(abi.encodeWithSelector(IMeshLedger.MeshLedger_NotAggregator.selector, admin));
        ledger.finalizeRound(taskId, 1, _aggregate(1));
    }

    function test_finalizeRound_revertsUnlessBaseWhenNothingAccepted() public {
        _submitAll();
        _scoreRound(_sameScores(-4_000));
        vm.prank(aggregator);
        vm.expectRevert(
            abi.encodeWithSelector(IMeshLedger.MeshLedger_AggregateMustBeBase.selector, GENESIS, _aggregate(1))
        );
        ledger.finalizeRound(taskId, 1, _aggregate(1));
        _finalize(GENESIS);
        assertEq(ledger.baseDigest(taskId, 2), GENESIS, "the model carries over");
    }

    function test_finalizeRound_revertsOnZeroAggregateWhenAccepted() public {
        _submitAll();
        _scoreRound(_sameScores(4_000));
        vm.prank(aggregator);
        vm.expectRevert(abi.encodeWithSelector(IMeshLedger.MeshLedger_InvalidDigest.selector, bytes32(0)));
        ledger.finalizeRound(taskId, 1, bytes32(0));
    }

    function test_finalizeRound_revertsOnWrongRound() public {
        _playRound(5_000);
        vm.prank(aggregator);
        vm.expectRevert(abi.encodeWithSelector(IMeshLedger.MeshLedger_WrongRound.selector, taskId, 2, 1));
        ledger.finalizeRound(taskId, 1, _aggregate(1));
    }

    function test_finalizeRound_emptyRoundAfterWindows() public {
        // Nobody submits: the windows run out, the validators reveal empty score lists, the base carries over.
        _scoreRound(_sameScores(0));
        _finalize(GENESIS);
        assertEq(ledger.account(validatorAddrs[0]).validatorReputation, 5_200, "distance 0 over no update");
    }

    // ─── carry-over (R6) ───

    function test_finalizeCarryOver_byAnyoneAfterGraceExactlyOnce() public {
        _submitAll();
        _scoreRound(_sameScores(5_000));
        uint64 graceEnd = _view().graceEnd;
        vm.warp(graceEnd - 1);
        vm.prank(stranger);
        vm.expectRevert(
            abi.encodeWithSelector(IMeshLedger.MeshLedger_GraceNotOver.selector, taskId, 1, graceEnd, graceEnd - 1)
        );
        ledger.finalizeCarryOver(taskId, 1);
        vm.warp(graceEnd);
        vm.recordLogs();
        vm.prank(stranger);
        ledger.finalizeCarryOver(taskId, 1);
        assertEq(_round(), 2, "the round advanced");
        assertEq(ledger.aggregateDigest(taskId, 1), GENESIS, "the base is the round's aggregate");
        assertEq(ledger.baseDigest(taskId, 2), GENESIS, "and the next round's base");
        // Reputations settle as usual; no reward accrues (no model was produced).
        assertEq(ledger.account(contributors[0]).contributorReputation, 5_250, "contributor settled");
        assertEq(ledger.account(validatorAddrs[0]).validatorReputation, 5_200, "validator settled");
        assertEq(ledger.account(contributors[0]).accrued, 0, "no contributor reward");
        assertEq(ledger.account(validatorAddrs[0]).accrued, 0, "no validator reward");
        // Exactly once: the round is gone, and the aggregator cannot finalize it any more either.
        vm.prank(stranger);
        vm.expectRevert(abi.encodeWithSelector(IMeshLedger.MeshLedger_WrongRound.selector, taskId, 2, 1));
        ledger.finalizeCarryOver(taskId, 1);
        vm.prank(aggregator);
        vm.expectRevert(abi.encodeWithSelector(IMeshLedger.MeshLedger_WrongRound.selector, taskId, 2, 1));
        ledger.finalizeRound(taskId, 1, _aggregate(1));
    }

    function test_finalizeCarryOver_emitsCarriedOverWithEmptyAcceptedSet() public {
        _submitAll();
        _scoreRound(_sameScores(5_000));
        _toGraceEnd();
        IMeshLedger.Settlement[] memory expected = new IMeshLedger.Settlement[](7);
        for (uint256 i; i < 4; ++i) {
            expected[i] = IMeshLedger.Settlement(contributors[i], IMeshLedger.Role.Contributor, 5_250, 0, 5_000, 0, false);
        }
        for (uint256 v; v < 3; ++v) {
            expected[4 + v] = IMeshLedger.Settlement(validatorAddrs[v], IMeshLedger.Role.Validator, 5_200, 0, 0, 0, false);
        }
        vm.expectEmit(address(ledger));
        emit IMeshLedger.RoundFinalized(taskId, 1, stranger, GENESIS, 0, 0, 0, true, expected);
        vm.prank(stranger);
        ledger.finalizeCarryOver(taskId, 1);
    }

    function test_finalizeRound_aggregatorMayStillFinalizeAfterGrace() public {
        _submitAll();
        _scoreRound(_sameScores(5_000));
        _toGraceEnd();
        _finalize(_aggregate(1));
        assertEq(ledger.aggregateDigest(taskId, 1), _aggregate(1), "until someone carries over");
    }

    // ─── claims ───

    function test_claimRewards_mintsAccruedOverRounds() public {
        _playRound(5_000);
        _playRound(5_000);
        address c = contributors[2];
        uint256 accrued = ledger.account(c).accrued;
        assertTrue(accrued > 0, "two rounds accrued");
        vm.expectEmit(address(ledger));
        emit IMeshLedger.RewardsClaimed(c, accrued);
        vm.prank(c);
        assertEq(ledger.claimRewards(), accrued, "amount");
        assertEq(token.balanceOf(c), accrued, "minted");
        vm.prank(c);
        vm.expectRevert(abi.encodeWithSelector(IMeshLedger.MeshLedger_NothingToClaim.selector, c));
        ledger.claimRewards();
    }

    function test_claimRewards_worksWhilePaused() public {
        _playRound(5_000);
        vm.prank(admin);
        ledger.pause();
        vm.prank(validatorAddrs[0]);
        assertTrue(ledger.claimRewards() > 0, "a pause does not lock earned rewards");
    }

    function test_claimRewards_revertsWithNothingAccrued() public {
        vm.prank(stranger);
        vm.expectRevert(abi.encodeWithSelector(IMeshLedger.MeshLedger_NothingToClaim.selector, stranger));
        ledger.claimRewards();
    }
}
