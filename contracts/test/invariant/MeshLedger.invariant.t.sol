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
        bytes4[] memory selectors = new bytes4[](8);
        selectors[0] = LedgerHandler.submit.selector;
        selectors[1] = LedgerHandler.submitRelayed.selector;
        selectors[2] = LedgerHandler.vote.selector;
        selectors[3] = LedgerHandler.voteBatch.selector;
        selectors[4] = LedgerHandler.voteAll.selector;
        selectors[5] = LedgerHandler.finalize.selector;
        selectors[6] = LedgerHandler.warp.selector;
        selectors[7] = LedgerHandler.changeRole.selector;
        targetSelector(FuzzSelector({addr: address(handler), selectors: selectors}));
    }

    /// 1. Only contributors' updates exist.
    function invariant_onlyContributorsSubmit() public view {
        assertEq(handler.updatesByNonContributors(), 0, "an update by a non-contributor was recorded");
    }

    /// 2. At most one update per contributor per round.
    function invariant_oneUpdatePerContributorPerRound() public view {
        assertEq(handler.duplicateUpdates(), 0, "a contributor has two updates in one round");
    }

    /// 3. At most one vote per validator per update (and only validators vote).
    function invariant_oneVotePerValidatorPerUpdate() public view {
        assertEq(handler.duplicateVotes(), 0, "a validator voted twice on one update");
        assertEq(handler.votesByNonValidators(), 0, "a vote by a non-validator was recorded");
    }

    /// 4. A finalized round's accepted set equals the quorum outcome of its votes; and the aggregator can
    /// always finalize a finalizable round with that outcome.
    function invariant_acceptedSetIsQuorumOutcome() public view {
        assertEq(handler.outcomeMismatches(), 0, "a round was finalized with another accepted set");
        assertEq(handler.honestRefusals(), 0, "finalizing with the quorum outcome was refused");
    }

    /// 5. Token supply equals the sum of rewards emitted; each round pays contributors and validators their
    /// share of the budget, less rounding dust, and nothing to a side with no one entitled.
    function invariant_supplyEqualsRewardsEmitted() public view {
        assertEq(handler.token().totalSupply(), handler.ghostRewards(), "supply != rewards in RoundFinalized");
        assertEq(handler.rewardViolations(), 0, "a round paid a side more than its share, or left out its share");
    }

    /// 6. Round states only move forward.
    function invariant_roundsOnlyMoveForward() public view {
        assertEq(handler.backwardSteps(), 0, "a round or phase went backwards");
        assertEq(ledger.currentRound(handler.taskId()), handler.ghostRound(), "round != finalizations + 1");
    }

    /// 7. Reputation stays within its bounds: [MIN, MAX] for every member of the role, zero for others.
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

    /// 8. The role flags the ledger keeps for its hot paths mirror AccessControl.
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
}
