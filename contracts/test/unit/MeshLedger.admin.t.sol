// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

import {IAccessControl} from "@openzeppelin/contracts/access/IAccessControl.sol";

import {MeshLedger} from "../../src/MeshLedger.sol";
import {MeshToken} from "../../src/MeshToken.sol";
import {IMeshLedger} from "../../src/interfaces/IMeshLedger.sol";
import {IMeshToken} from "../../src/interfaces/IMeshToken.sol";
import {Fixture} from "../utils/Fixture.sol";

/// Construction, roles (and the bookkeeping that mirrors them), task creation.
contract MeshLedgerAdminTest is Fixture {
    // ─── constructor ───

    function test_roleIds_matchLedger() public view {
        assertEq(ledger.DEFAULT_ADMIN_ROLE(), ADMIN_ROLE, "admin");
        assertEq(ledger.CONTRIBUTOR_ROLE(), CONTRIBUTOR, "contributor");
        assertEq(ledger.VALIDATOR_ROLE(), VALIDATOR, "validator");
        assertEq(ledger.AGGREGATOR_ROLE(), AGGREGATOR, "aggregator");
    }

    function test_constructor_grantsAdminKeepsTokenAndDelay() public view {
        assertTrue(ledger.hasRole(ADMIN_ROLE, admin), "admin role");
        assertEq(ledger.token(), address(token), "token");
        assertEq(ledger.roleDelay(), ROLE_DELAY, "role delay");
        assertEq(ledger.taskCount(), 1, "fixture task");
    }

    function test_constructor_revertsOnZeroToken() public {
        vm.expectRevert(IMeshLedger.MeshLedger_ZeroToken.selector);
        new MeshLedger(admin, IMeshToken(address(0)), ROLE_DELAY);
    }

    function test_constructor_revertsOnZeroAdmin() public {
        vm.expectRevert(IMeshLedger.MeshLedger_ZeroAdmin.selector);
        new MeshLedger(address(0), token, ROLE_DELAY);
    }

    function test_eip712Domain_namesLedgerVersion2() public view {
        (, string memory name, string memory version, uint256 chainId, address verifying,,) = ledger.eip712Domain();
        assertEq(keccak256(bytes(name)), keccak256("MeshLedger"), "name");
        assertEq(keccak256(bytes(version)), keccak256("2"), "version");
        assertEq(chainId, block.chainid, "chain id");
        assertEq(verifying, address(ledger), "verifying contract");
    }

    // ─── immediate grants: only before the first task ───

    function _freshLedger() internal returns (MeshLedger fresh) {
        fresh = new MeshLedger(admin, token, ROLE_DELAY);
    }

    function test_grantRole_immediateBeforeAnyTask() public {
        MeshLedger fresh = _freshLedger();
        address who = address(0xF00D);
        vm.expectEmit(address(fresh));
        emit IMeshLedger.ReputationInitialized(who, IMeshLedger.Role.Contributor, 5_000);
        vm.prank(admin);
        fresh.grantRole(CONTRIBUTOR, who);
        IMeshLedger.AccountView memory a = fresh.account(who);
        assertTrue(a.contributor, "flag");
        assertEq(a.contributorReputation, 5_000, "start reputation");
        assertEq(a.memberNumber, 1, "first seat");
        assertEq(fresh.contributorCount(), 1, "count");
    }

    function test_grantRole_revertsOnceATaskExists() public {
        address who = address(0xF00D);
        vm.prank(admin);
        vm.expectRevert(abi.encodeWithSelector(IMeshLedger.MeshLedger_RoleChangeDelayed.selector, CONTRIBUTOR, who));
        ledger.grantRole(CONTRIBUTOR, who);
    }

    function test_revokeRole_revertsOnceATaskExists() public {
        address v = validatorAddrs[0];
        vm.prank(admin);
        vm.expectRevert(abi.encodeWithSelector(IMeshLedger.MeshLedger_RoleChangeDelayed.selector, VALIDATOR, v));
        ledger.revokeRole(VALIDATOR, v);
        assertTrue(ledger.hasRole(VALIDATOR, v), "still a validator");
    }

    function test_grantRole_revertsWhenNotAdmin() public {
        MeshLedger fresh = _freshLedger();
        vm.prank(stranger);
        vm.expectRevert(
            abi.encodeWithSelector(IAccessControl.AccessControlUnauthorizedAccount.selector, stranger, ADMIN_ROLE)
        );
        fresh.grantRole(CONTRIBUTOR, stranger);
    }

    // ─── delayed role changes ───

    /// "Why" 5: the admin cannot make itself aggregator (and rewrite outcomes) at once; the change is public and
    /// waits out the delay, during which it can be seen (and the aggregator role is still not held).
    function test_adminCannotGrantItselfAggregatorWithoutTheDelay() public {
        vm.startPrank(admin);
        vm.expectRevert(abi.encodeWithSelector(IMeshLedger.MeshLedger_RoleChangeDelayed.selector, AGGREGATOR, admin));
        ledger.grantRole(AGGREGATOR, admin);
        vm.expectEmit(address(ledger));
        emit IMeshLedger.RoleChangeScheduled(AGGREGATOR, admin, true, uint64(block.timestamp + ROLE_DELAY));
        uint64 at = ledger.scheduleRoleChange(AGGREGATOR, admin, true);
        vm.expectRevert(
            abi.encodeWithSelector(
                IMeshLedger.MeshLedger_RoleChangeNotReady.selector, AGGREGATOR, admin, true, at, block.timestamp
            )
        );
        ledger.executeRoleChange(AGGREGATOR, admin, true);
        vm.stopPrank();
        assertFalse(ledger.account(admin).aggregator, "not yet an aggregator");
        assertEq(ledger.pendingRoleChange(AGGREGATOR, admin, true), at, "visible while pending");

        vm.warp(at - 1);
        vm.expectRevert(
            abi.encodeWithSelector(IMeshLedger.MeshLedger_RoleChangeNotReady.selector, AGGREGATOR, admin, true, at, at - 1)
        );
        ledger.executeRoleChange(AGGREGATOR, admin, true);
        vm.warp(at);
        vm.prank(stranger); // anyone may execute
        ledger.executeRoleChange(AGGREGATOR, admin, true);
        assertTrue(ledger.account(admin).aggregator, "aggregator after the delay");
        assertEq(ledger.pendingRoleChange(AGGREGATOR, admin, true), 0, "no longer pending");
    }

    function test_scheduleRoleChange_revertsWhenNotAdmin() public {
        vm.prank(stranger);
        vm.expectRevert(
            abi.encodeWithSelector(IAccessControl.AccessControlUnauthorizedAccount.selector, stranger, ADMIN_ROLE)
        );
        ledger.scheduleRoleChange(AGGREGATOR, stranger, true);
    }

    function test_scheduleRoleChange_revertsWhenAlreadyPending() public {
        vm.startPrank(admin);
        uint64 at = ledger.scheduleRoleChange(CONTRIBUTOR, stranger, true);
        vm.expectRevert(
            abi.encodeWithSelector(IMeshLedger.MeshLedger_RoleChangePending.selector, CONTRIBUTOR, stranger, true, at)
        );
        ledger.scheduleRoleChange(CONTRIBUTOR, stranger, true);
        vm.stopPrank();
    }

    function test_cancelRoleChange_stopsIt() public {
        vm.startPrank(admin);
        ledger.scheduleRoleChange(VALIDATOR, validatorAddrs[0], false);
        vm.expectEmit(address(ledger));
        emit IMeshLedger.RoleChangeCancelled(VALIDATOR, validatorAddrs[0], false);
        ledger.cancelRoleChange(VALIDATOR, validatorAddrs[0], false);
        vm.stopPrank();
        vm.warp(block.timestamp + ROLE_DELAY);
        vm.expectRevert(
            abi.encodeWithSelector(
                IMeshLedger.MeshLedger_RoleChangeNotScheduled.selector, VALIDATOR, validatorAddrs[0], false
            )
        );
        ledger.executeRoleChange(VALIDATOR, validatorAddrs[0], false);
        assertTrue(ledger.account(validatorAddrs[0]).validator, "still a validator");
    }

    function test_cancelRoleChange_revertsWhenNothingPendingOrNotAdmin() public {
        vm.prank(admin);
        vm.expectRevert(
            abi.encodeWithSelector(IMeshLedger.MeshLedger_RoleChangeNotScheduled.selector, AGGREGATOR, stranger, true)
        );
        ledger.cancelRoleChange(AGGREGATOR, stranger, true);
        vm.prank(admin);
        ledger.scheduleRoleChange(AGGREGATOR, stranger, true);
        vm.prank(stranger);
        vm.expectRevert(
            abi.encodeWithSelector(IAccessControl.AccessControlUnauthorizedAccount.selector, stranger, ADMIN_ROLE)
        );
        ledger.cancelRoleChange(AGGREGATOR, stranger, true);
    }

    function test_executeRoleChange_onlyOnce() public {
        _changeRole(CONTRIBUTOR, stranger, true);
        assertTrue(ledger.account(stranger).contributor, "granted");
        vm.expectRevert(
            abi.encodeWithSelector(IMeshLedger.MeshLedger_RoleChangeNotScheduled.selector, CONTRIBUTOR, stranger, true)
        );
        ledger.executeRoleChange(CONTRIBUTOR, stranger, true);
    }

    function test_executeRoleChange_revokesAndRegrantsKeepingSeatAndReputation() public {
        address c = contributors[1];
        IMeshLedger.AccountView memory before = ledger.account(c);
        uint256 count = ledger.contributorCount();
        _changeRole(CONTRIBUTOR, c, false);
        assertFalse(ledger.account(c).contributor, "flag cleared");
        assertEq(ledger.contributorCount(), count - 1, "count");
        _changeRole(CONTRIBUTOR, c, true);
        IMeshLedger.AccountView memory again = ledger.account(c);
        assertEq(again.memberNumber, before.memberNumber, "same seat");
        assertEq(again.contributorReputation, before.contributorReputation, "same reputation");
    }

    function test_executeRoleChange_validatorLeavesListBySwap() public {
        _changeRole(VALIDATOR, validatorAddrs[0], false);
        address[] memory list = ledger.validators();
        assertEq(list.length, 2, "one left the list");
        assertEq(list[0], validatorAddrs[2], "last moved into the hole");
        assertEq(list[1], validatorAddrs[1], "others stay");
        assertFalse(ledger.account(validatorAddrs[0]).validator, "flag cleared");
        _changeRole(VALIDATOR, validatorAddrs[2], false);
        list = ledger.validators();
        assertEq(list.length, 1, "two left");
        assertEq(list[0], validatorAddrs[1], "remaining");
    }

    function test_executeRoleChange_refusesConflictAndKeepsItPending() public {
        vm.prank(admin);
        uint64 at = ledger.scheduleRoleChange(CONTRIBUTOR, validatorAddrs[0], true);
        vm.warp(at);
        vm.expectRevert(
            abi.encodeWithSelector(
                IMeshLedger.MeshLedger_RoleConflict.selector, validatorAddrs[0], VALIDATOR, CONTRIBUTOR
            )
        );
        ledger.executeRoleChange(CONTRIBUTOR, validatorAddrs[0], true);
        assertEq(ledger.pendingRoleChange(CONTRIBUTOR, validatorAddrs[0], true), at, "still pending: cancel it");
    }

    function test_executeRoleChange_adminRoleItselfIsDelayed() public {
        address heir = address(0x4E12);
        vm.prank(admin);
        vm.expectRevert(abi.encodeWithSelector(IMeshLedger.MeshLedger_RoleChangeDelayed.selector, ADMIN_ROLE, heir));
        ledger.grantRole(ADMIN_ROLE, heir);
        _changeRole(ADMIN_ROLE, heir, true);
        assertTrue(ledger.hasRole(ADMIN_ROLE, heir), "admin after the delay");
    }

    function test_renounceRole_staysImmediate() public {
        uint256 count = ledger.contributorCount();
        vm.prank(contributors[0]);
        ledger.renounceRole(CONTRIBUTOR, contributors[0]);
        assertEq(ledger.contributorCount(), count - 1, "count");
        assertFalse(ledger.account(contributors[0]).contributor, "flag cleared");
    }

    function test_grantRole_revertsBeyondMaxValidators() public {
        MeshLedger fresh = _freshLedger();
        uint256 max = fresh.MAX_VALIDATORS();
        vm.startPrank(admin);
        for (uint256 i; i < max; ++i) {
            fresh.grantRole(VALIDATOR, address(uint160(0xBEEF0000 + i)));
        }
        vm.expectRevert(abi.encodeWithSelector(IMeshLedger.MeshLedger_TooManyValidators.selector, max));
        fresh.grantRole(VALIDATOR, address(0xBEEF));
        vm.stopPrank();
    }

    function test_grantRole_revertsOnRoleConflict() public {
        MeshLedger fresh = _freshLedger();
        vm.startPrank(admin);
        fresh.grantRole(VALIDATOR, stranger);
        vm.expectRevert(
            abi.encodeWithSelector(IMeshLedger.MeshLedger_RoleConflict.selector, stranger, VALIDATOR, CONTRIBUTOR)
        );
        fresh.grantRole(CONTRIBUTOR, stranger);
        fresh.grantRole(CONTRIBUTOR, admin);
        vm.expectRevert(
            abi.encodeWithSelector(IMeshLedger.MeshLedger_RoleConflict.selector, admin, CONTRIBUTOR, VALIDATOR)
        );
        fresh.grantRole(VALIDATOR, admin);
        vm.stopPrank();
    }

    // ─── createTask ───

    function test_createTask_storesParamsAndOpensRoundOneWithItsValidatorSet() public {
        IMeshLedger.TaskParams memory p = _params();
        p.rule = 1;
        p.ruleParam = (uint32(2_500) << 16) | 1_000; // clip 2.5, trim 10 % per side
        p.quorum = 3;
        uint16[] memory weights = new uint16[](3);
        weights[0] = 5_000;
        weights[1] = 5_000;
        weights[2] = 5_000;
        vm.expectEmit(address(ledger));
        emit IMeshLedger.TaskCreated(2, admin, p);
        vm.expectEmit(address(ledger));
        emit IMeshLedger.RoundOpened(2, 1, admin, GENESIS, uint64(block.timestamp), validatorAddrs, weights);
        vm.prank(admin);
        uint256 id = ledger.createTask(p);
        assertEq(id, 2, "second task");
        (IMeshLedger.TaskParams memory got, uint32 round) = ledger.task(id);
        assertEq(round, 1, "round 1");
        assertEq(keccak256(abi.encode(got)), keccak256(abi.encode(p)), "every parameter stored");
        assertEq(ledger.baseDigest(id, 1), GENESIS, "base of round 1");
        (address[] memory members, uint16[] memory w,,) = ledger.validatorSet(id, 1);
        assertEq(members.length, 3, "set frozen");
        assertEq(w[2], 5_000, "weights");
    }

    /// "Why" 6: a quorum no validator set can reach would stall every round; it is refused.
    function test_createTask_revertsWhenQuorumAboveValidators() public {
        IMeshLedger.TaskParams memory p = _params();
        p.quorum = 4;
        _expectCreateRevert(
            p, abi.encodeWithSelector(IMeshLedger.MeshLedger_QuorumAboveValidators.selector, uint16(4), uint256(3))
        );
        p.quorum = 3;
        vm.prank(admin);
        ledger.createTask(p); // every validator: fine
    }

    function test_createTask_revertsWhenNotAdmin() public {
        IMeshLedger.TaskParams memory p = _params();
        vm.prank(stranger);
        vm.expectRevert(
            abi.encodeWithSelector(IAccessControl.AccessControlUnauthorizedAccount.selector, stranger, ADMIN_ROLE)
        );
        ledger.createTask(p);
    }

    function test_createTask_revertsOnZeroDigests() public {
        IMeshLedger.TaskParams memory p = _params();
        p.specDigest = 0;
        _expectCreateRevert(p, abi.encodeWithSelector(IMeshLedger.MeshLedger_InvalidDigest.selector, bytes32(0)));
        p = _params();
        p.genesisDigest = 0;
        _expectCreateRevert(p, abi.encodeWithSelector(IMeshLedger.MeshLedger_InvalidDigest.selector, bytes32(0)));
    }

    function test_createTask_revertsOnRuleArgumentsThatDoNotFit() public {
        _expectRuleRevert(4, 0); // unknown rule
        _expectRuleRevert(0, 1); // fedavg takes no argument
        _expectRuleRevert(2, 7); // nor does the median
        _expectRuleRevert(1, 0); // trimmed mean must trim
        _expectRuleRevert(1, 5_000); // but less than half
    }

    function test_createTask_acceptsEveryRuleWithFittingArgument() public {
        uint32[4] memory args = [uint32(0), 4_999, 0, 3];
        vm.startPrank(admin);
        for (uint8 rule; rule < 4; ++rule) {
            IMeshLedger.TaskParams memory p = _params();
            p.rule = rule;
            p.ruleParam = (uint32(1_500) << 16) | args[rule]; // every rule may clip
            ledger.createTask(p);
        }
        vm.stopPrank();
        assertEq(ledger.taskCount(), 5, "four more tasks");
    }

    function test_createTask_revertsOnZeroQuorum() public {
        IMeshLedger.TaskParams memory p = _params();
        p.quorum = 0;
        _expectCreateRevert(p, abi.encodeWithSelector(IMeshLedger.MeshLedger_InvalidQuorum.selector, uint16(0)));
    }

    function test_createTask_revertsOnAnyZeroWindow() public {
        for (uint256 which; which < 4; ++which) {
            IMeshLedger.TaskParams memory p = _params();
            if (which == 0) p.submissionWindow = 0;
            if (which == 1) p.commitWindow = 0;
            if (which == 2) p.revealWindow = 0;
            if (which == 3) p.finalizeGrace = 0;
            _expectCreateRevert(
                p,
                abi.encodeWithSelector(
                    IMeshLedger.MeshLedger_InvalidWindows.selector,
                    p.submissionWindow,
                    p.commitWindow,
                    p.revealWindow,
                    p.finalizeGrace
                )
            );
        }
    }

    function test_createTask_revertsOnMaxSamplesOutOfRange() public {
        uint64 cap = ledger.MAX_SAMPLES_CAP();
        assertEq(cap, 2 ** 32, "cap");
        IMeshLedger.TaskParams memory p = _params();
        p.maxSamples = 0;
        _expectCreateRevert(p, abi.encodeWithSelector(IMeshLedger.MeshLedger_InvalidMaxSamples.selector, 0, cap));
        p.maxSamples = cap + 1;
        _expectCreateRevert(p, abi.encodeWithSelector(IMeshLedger.MeshLedger_InvalidMaxSamples.selector, cap + 1, cap));
        p.maxSamples = cap;
        vm.prank(admin);
        ledger.createTask(p);
    }

    function test_createTask_revertsOnRewardAtCap() public {
        IMeshLedger.TaskParams memory p = _params();
        p.rewardPerRound = 2 ** 96;
        _expectCreateRevert(
            p, abi.encodeWithSelector(IMeshLedger.MeshLedger_InvalidReward.selector, uint128(2 ** 96), uint128(2 ** 96))
        );
        p.rewardPerRound = 2 ** 96 - 1;
        vm.prank(admin);
        ledger.createTask(p);
    }

    function _expectRuleRevert(uint8 rule, uint32 param) internal {
        IMeshLedger.TaskParams memory p = _params();
        p.rule = rule;
        p.ruleParam = param;
        _expectCreateRevert(p, abi.encodeWithSelector(IMeshLedger.MeshLedger_InvalidRule.selector, rule, param));
    }

    function _expectCreateRevert(IMeshLedger.TaskParams memory p, bytes memory err) internal {
        vm.prank(admin);
        vm.expectRevert(err);
        ledger.createTask(p);
    }

    function test_supportsInterface_accessControl() public view {
        assertTrue(ledger.supportsInterface(type(IAccessControl).interfaceId), "IAccessControl");
    }

    function test_token_isMintedOnlyByLedger() public view {
        assertEq(MeshToken(address(token)).minter(), address(ledger), "ledger mints");
    }
}
