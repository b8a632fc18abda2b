// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

import {MeshLedger} from "../../src/MeshLedger.sol";
import {InvariantTest} from "../utils/Test.sol";
import {LedgerHandler} from "./Handler.sol";

/// @notice The ledger's invariants (listed in prose in README.md next to this file), checked after every call of
/// random sequences of LedgerHandler actions.
contract MeshLedgerInvariantTest is InvariantTest {
    LedgerHandler internal handler;
    MeshLedger internal ledger;

    function setUp() public {
        handler = new LedgerHandler();
        ledger = handler.ledger();
        targetContract(address(handler));
        bytes4[] memory selectors = new bytes4[](13);
        selectors[0] = LedgerHandler.submit.selector;
        selectors[1] = LedgerHandler.submitRelayed.selector;
        selectors[2] = LedgerHandler.commit.selector;
        selectors[3] = LedgerHandler.reveal.selector;
        selectors[4] = LedgerHandler.scoreAll.selector;
        selectors[5] = LedgerHandler.scoreAll.selector; // twice: rounds need whole sets scoring
        selectors[6] = LedgerHandler.finalize.selector;
        selectors[7] = LedgerHandler.carryOver.selector;
        selectors[8] = LedgerHandler.claim.selector;
        selectors[9] = LedgerHandler.pauseForAWhile.selector;
        selectors[10] = LedgerHandler.warp.selector;
        selectors[11] = LedgerHandler.warp.selector;
        selectors[12] = LedgerHandler.changeRole.selector;
        targetSelector(FuzzSelector({addr: address(handler), selectors: selectors}));
    }

    /// 1. Only contributors' updates exist, at most one per contributor per round, never above maxSamples.
    function invariant_submissionsAreBounded() public view {
        assertEq(handler.updatesByNonContributors(), 0, "an update by a non-contributor was recorded");
        assertEq(handler.duplicateUpdates(), 0, "a contributor has two updates in one round");
        assertEq(handler.samplesAboveMax(), 0, "a submission above maxSamples was recorded");
    }

    /// 2. Only members of the round's frozen set commit, once each, during the commit phase; a reveal must match
    /// its commitment; the set is the validators holding the role at the round's opening with their reputations.
    function invariant_commitRevealIsBinding() public view {
        assertEq(handler.commitsByOutsiders(), 0, "a commitment by a non-member of the round's set");
        assertEq(handler.duplicateCommits(), 0, "a member committed twice");
        assertEq(handler.lateCommits(), 0, "a commitment outside the commit phase");
        assertEq(handler.revealsWithoutCommitment(), 0, "a reveal without a commitment");
        assertEq(handler.tamperedRevealsAccepted(), 0, "a reveal that differs from its commitment");
        assertEq(handler.setViolations(), 0, "a frozen set other than the role holders with their reputations");
    }

    /// 3. A finalized round's accepted set is the consensus outcome of the revealed scores; an aggregator can
    /// always finalize a finalizable round.
    function invariant_acceptedSetIsConsensusOutcome() public view {
        assertEq(handler.outcomeMismatches(), 0, "the accepted set differs from the consensus outcome");
        assertEq(handler.honestRefusals(), 0, "finalizing a finalizable round was refused");
    }

    /// 4. Reward accounting: everything accrued is either claimed (minted) or still accrued; each round pays each
    /// side at most its share; carry-overs pay nothing.
    function invariant_accruedEqualsMintedPlusUnclaimed() public view {
        uint256 unclaimed;
        for (uint256 i; i < handler.actorCount(); ++i) {
            unclaimed += ledger.account(handler.actors(i)).accrued;
        }
        assertEq(unclaimed + handler.token().totalSupply(), handler.ghostAccrued(), "accrued != minted + unclaimed");
        assertEq(handler.token().totalSupply(), handler.ghostClaimed(), "minted != claimed");
        assertEq(handler.rewardViolations(), 0, "a round paid a side more than its share, or left out its share");
        assertEq(handler.carryOverViolations(), 0, "a carry-over before the grace, or one that paid");
    }

    /// 5. Rounds only move forward; nothing happens while paused and a pause moves no deadline.
    function invariant_roundsOnlyAdvance() public view {
        assertEq(handler.backwardSteps(), 0, "a round or phase went backwards");
        assertEq(ledger.currentRound(handler.taskId()), handler.ghostRound(), "round != endings + 1");
        assertEq(handler.actionsWhilePaused(), 0, "an action succeeded while paused");
        assertEq(handler.pauseShifts(), 0, "a pause moved a deadline");
    }

    /// 6. Reputation stays within its bounds: [MIN, MAX] for every member of the role, zero for others.
    function invariant_reputationWithinBounds() public view {
        uint32 min = ledger.REPUTATION_MIN();
        uint32 max = ledger.REPUTATION_MAX();
        for (uint256 i; i < handler.actorCount(); ++i) {
            address who = handler.actors(i);
            (uint32 c, uint32 v) = ledger.reputation(who);
            if (handler.everContributor(who)) assertTrue(c >= min && c <= max, "contributor reputation out of bounds");
            else assertEq(c, 0, "contributor reputation without the role");
            if (handler.everValidator(who)) assertTrue(v >= min && v <= max, "validator reputation out of bounds");
            else assertEq(v, 0, "validator reputation without the role");
        }
    }

    /// 7. The role flags the ledger keeps for its hot paths mirror AccessControl.
    function invariant_flagsMirrorRoles() public view {
        for (uint256 i; i < handler.actorCount(); ++i) {
            address who = handler.actors(i);
            bool c = ledger.hasRole(ledger.CONTRIBUTOR_ROLE(), who);
            bool v = ledger.hasRole(ledger.VALIDATOR_ROLE(), who);
            assertEq(ledger.account(who).contributor, c, "contributor flag");
            assertEq(ledger.account(who).validator, v, "validator flag");
            assertEq(c, handler.isContributor(who), "ghost contributor role");
            assertEq(v, handler.isValidator(who), "ghost validator role");
        }
    }

    /// The sequences must reach the interesting states, or the invariants above would hold vacuously.
    function afterInvariant() public view {
        assertGe(handler.rounds(), 1, "no round ended");
        assertGe(handler.reveals(), 1, "no reveal");
    }
}
