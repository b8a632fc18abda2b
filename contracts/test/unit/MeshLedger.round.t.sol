// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

import {IMeshLedger} from "../../src/interfaces/IMeshLedger.sol";
import {Fixture} from "../utils/Fixture.sol";

/// @notice A round end to end: phases, commit and reveal, consensus, settlement, accrual and claims.
contract MeshLedgerRoundTest is Fixture {
    function test_round_phasesMoveForwardAndEndEarly() public {
        assertEq(uint256(_view().phase), uint256(IMeshLedger.Phase.Open), "opens for submissions");
        _submitAll(); // every contributor submitted: submissions close now
        assertEq(uint256(_view().phase), uint256(IMeshLedger.Phase.Commit), "commit phase after the early close");
        int256[][] memory rows = _sameScores(5_000);
        for (uint256 v; v < 3; ++v) {
            _commit(validatorAddrs[v], rows[v]);
        }
        assertEq(uint256(_view().phase), uint256(IMeshLedger.Phase.Reveal), "every member committed: reveal");
        for (uint256 v; v < 3; ++v) {
            _reveal(validatorAddrs[v], rows[v]);
        }
        IMeshLedger.RoundView memory r = _view();
        assertEq(uint256(r.phase), uint256(IMeshLedger.Phase.Closed), "every committer revealed: closed");
        assertTrue(r.finalizable, "finalizable before the reveal window ends");
        assertEq(r.revealCount, 3, "three reveals");
        _finalize(_aggregate(1));
        assertEq(_round(), 2, "next round open");
        assertEq(ledger.aggregateDigest(taskId, 1), _aggregate(1), "aggregate recorded");
        assertEq(ledger.baseDigest(taskId, 2), _aggregate(1), "next round trains on it");
    }

    function test_round_acceptedUpdatesAccrueRewardsAndRaiseReputation() public {
        _playRound(5_000);
        uint256 contributorShare = BUDGET - BUDGET / 10;
        uint256 total;
        for (uint256 i; i < contributors.length; ++i) {
            IMeshLedger.AccountView memory a = ledger.account(contributors[i]);
            // Equal consensus and equal reputations: equal shares.
            assertEq(a.accrued, contributorShare / 4, "equal contributor share accrued");
            assertEq(a.contributorReputation, 5_000 + 250, "reputation +500 * 0.5");
            total += a.accrued;
        }
        for (uint256 v; v < validatorAddrs.length; ++v) {
            IMeshLedger.AccountView memory a = ledger.account(validatorAddrs[v]);
            assertEq(a.accrued, (BUDGET / 10) / 3, "equal validator share accrued");
            assertEq(a.validatorReputation, 5_200, "agreeing validator +200");
            total += a.accrued;
        }
        assertLe(total, BUDGET, "never more than the budget");
        assertEq(token.totalSupply(), 0, "nothing minted before a claim");
        vm.prank(contributors[0]);
        uint256 claimed = ledger.claimRewards();
        assertEq(claimed, contributorShare / 4, "claim returns the accrued amount");
        assertEq(token.balanceOf(contributors[0]), claimed, "claim mints it");
        assertEq(ledger.account(contributors[0]).accrued, 0, "nothing left to claim");
    }
}
