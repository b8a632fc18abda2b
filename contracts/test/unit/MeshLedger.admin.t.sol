// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

import {IAccessControl} from "@openzeppelin/contracts/access/IAccessControl.sol";
import {Pausable} from "@openzeppelin/contracts/utils/Pausable.sol";

import {MeshLedger} from "../../src/MeshLedger.sol";
import {MeshToken} from "../../src/MeshToken.sol";
import {IMeshLedger} from "../../src/interfaces/IMeshLedger.sol";
import {IMeshToken} from "../../src/interfaces/IMeshToken.sol";
import {Fixture} from "../utils/Fixture.sol";

/// Construction, roles (and the bookkeeping that mirrors them), task creation, pausing.
contract MeshLedgerAdminTest is Fixture {
    // ─── constructor ───

    function test_roleIds_matchLedger() public view {
        assertEq(ledger.DEFAULT_ADMIN_ROLE(), ADMIN_ROLE, "admin");
        assertEq(ledger.CONTRIBUTOR_ROLE(), CONTRIBUTOR, "contributor");
        assertEq(ledger.VALIDATOR_ROLE(), VALIDATOR, "validator");
        assertEq(ledger.AGGREGATOR_ROLE(), AGGREGATOR, "aggregator");
    }

    function test_constructor_grantsAdminAndKeepsToken() public view {
        assertTrue(ledger.hasRole(ADMIN_ROLE, admin), "admin role");
        assertEq(ledger.token(), address(token), "token");
        assertEq(ledger.taskCount(), 1, "fixture task");
    }

    function test_constructor_revertsOnZeroToken() public {
        vm.expectRevert(IMeshLedger.MeshLedger_ZeroToken.selector);
        new MeshLedger(admin, IMeshToken(address(0)));
    }

    function test_constructor_revertsOnZeroAdmin() public {
        vm.expectRevert(IMeshLedger.MeshLedger_ZeroAdmin.selector);
        new MeshLedger(address(0), token);
    }

    function test_eip712Domain_namesLedgerVersion1() public view {
        (, string memory name, string memory version, uint256 chainId, address verifying,,) = ledger.eip712Domain();
        assertEq(keccak256(bytes(name)), keccak256("MeshLedger"), "name");
        assertEq(keccak256(bytes(version)), keccak256("1"), "version");
        assertEq(chainId, block.chainid, "chain id");
        assertEq(verifying, address(ledger), "verifying contract");
    }

    // ─── grantRole / revokeRole ───

    function test_grantRole_contributorGetsSeatStartReputationAndCount() public {
        address fresh = address(0xF00D);
        uint256 before = ledger.contributorCount();
        vm.expectEmit(address(ledger));
        emit IMeshLedger.ReputationInitialized(fresh, IMeshLedger.Role.Contributor, 5_000);
        vm.prank(admin);
        ledger.grantRole(CONTRIBUTOR, fresh);
        IMeshLedger.AccountView memory a = ledger.account(fresh);
        assertTrue(a.contributor, "flag");
        assertEq(a.contributorReputation, ledger.REPUTATION_START(), "start reputation");
        assertEq(a.memberNumber, contributors.length + validatorAddrs.length + 1, "next seat");
        assertEq(ledger.contributorCount(), before + 1, "count");
    }

    function test_grantRole_validatorJoinsListWithStartReputation() public {
        address fresh = address(0xF00D);
        vm.prank(admin);
        ledger.grantRole(VALIDATOR, fresh);
        address[] memory list = ledger.validators();
        assertEq(list.length, validatorAddrs.length + 1, "listed");
        assertEq(list[list.length - 1], fresh, "appended");
        (, uint32 rep) = ledger.reputation(fresh);
        assertEq(rep, ledger.REPUTATION_START(), "validator start reputation");
        assertTrue(ledger.account(fresh).validator, "flag");
    }

    function test_grantRole_aggregatorSetsFlag() public {
        vm.prank(admin);
        ledger.grantRole(AGGREGATOR, stranger);
        assertTrue(ledger.account(stranger).aggregator, "flag");
    }

    function test_grantRole_againChangesNothing() public {
        uint256 before = ledger.contributorCount();
        vm.prank(admin);
        ledger.grantRole(CONTRIBUTOR, contributors[0]);
        assertEq(ledger.contributorCount(), before, "count unchanged");
    }

    function test_grantRole_revertsWhenValidatorAsksContributor() public {
        address v = validatorAddrs[0];
        bytes32 role = CONTRIBUTOR;
        vm.prank(admin);
        vm.expectRevert(abi.encodeWithSelector(IMeshLedger.MeshLedger_RoleConflict.selector, v, VALIDATOR, CONTRIBUTOR));
        ledger.grantRole(role, v);
    }

    function test_grantRole_revertsWhenContributorAsksValidator() public {
        address c = contributors[0];
        bytes32 role = VALIDATOR;
        vm.prank(admin);
        vm.expectRevert(abi.encodeWithSelector(IMeshLedger.MeshLedger_RoleConflict.selector, c, CONTRIBUTOR, VALIDATOR));
        ledger.grantRole(role, c);
    }

    function test_grantRole_revertsBeyondMaxValidators() public {
        bytes32 role = VALIDATOR;
        uint256 max = ledger.MAX_VALIDATORS();
        vm.startPrank(admin);
        for (uint256 i = validatorAddrs.length; i < max; ++i) {
            ledger.grantRole(role, address(uint160(0xBEEF0000 + i)));
        }
        vm.expectRevert(abi.encodeWithSelector(IMeshLedger.MeshLedger_TooManyValidators.selector, max));
        ledger.grantRole(role, address(0xBEEF));
        vm.stopPrank();
    }

    function test_grantRole_revertsWhenNoSeatIsLeft() public {
        // Storage slot 3 packs Pausable's flag (byte 0), the task count (1-8), the contributor count (9-12) and
        // the last seat given (13-14): `forge inspect MeshLedger storageLayout`. Pretend every seat is taken.
        bytes32 slot = bytes32(uint256(3));
        uint256 packed = uint256(vm.load(address(ledger), slot));
        vm.store(address(ledger), slot, bytes32(packed | (uint256(type(uint16).max) << 104)));
        uint256 max = ledger.MAX_SEATS();
        vm.prank(admin);
        vm.expectRevert(abi.encodeWithSelector(IMeshLedger.MeshLedger_TooManyMembers.selector, max));
        ledger.grantRole(CONTRIBUTOR, address(0xF00D));
        // A member that already holds a seat can still be granted a role again.
        vm.startPrank(admin);
        ledger.revokeRole(CONTRIBUTOR, contributors[0]);
        ledger.grantRole(CONTRIBUTOR, contributors[0]);
        vm.stopPrank();
        assertTrue(ledger.account(contributors[0]).contributor, "re-granted on its old seat");
    }

    function test_grantRole_revertsWhenNotAdmin() public {
        bytes32 role = CONTRIBUTOR;
        vm.prank(stranger);
        vm.expectRevert(
            abi.encodeWithSelector(IAccessControl.AccessControlUnauthorizedAccount.selector, stranger, ADMIN_ROLE)
        );
        ledger.grantRole(role, stranger);
    }

    function test_revokeRole_contributorKeepsSeatAndReputation() public {
        address c = contributors[1];
        IMeshLedger.AccountView memory before = ledger.account(c);
        uint256 count = ledger.contributorCount();
        vm.startPrank(admin);
        ledger.revokeRole(CONTRIBUTOR, c);
        IMeshLedger.AccountView memory revoked = ledger.account(c);
        assertFalse(revoked.contributor, "flag cleared");
        assertEq(ledger.contributorCount(), count - 1, "count");
        ledger.grantRole(CONTRIBUTOR, c);
        vm.stopPrank();
        IMeshLedger.AccountView memory again = ledger.account(c);
        assertEq(again.memberNumber, before.memberNumber, "same seat");
        assertEq(again.contributorReputation, before.contributorReputation, "same reputation");
    }

    function test_revokeRole_validatorLeavesListBySwap() public {
        vm.prank(admin);
        ledger.revokeRole(VALIDATOR, validatorAddrs[0]);
        address[] memory list = ledger.validators();
        assertEq(list.length, 2, "one left the list");
        assertEq(list[0], validatorAddrs[2], "last moved into the hole");
        assertEq(list[1], validatorAddrs[1], "others stay");
        assertFalse(ledger.account(validatorAddrs[0]).validator, "flag cleared");
        // The moved validator can still leave cleanly (its position was updated).
        vm.prank(admin);
        ledger.revokeRole(VALIDATOR, validatorAddrs[2]);
        list = ledger.validators();
        assertEq(list.length, 1, "two left");
        assertEq(list[0], validatorAddrs[1], "remaining");
    }

    function test_revokeRole_aggregatorClearsFlag() public {
        vm.prank(admin);
        ledger.revokeRole(AGGREGATOR, aggregator);
        assertFalse(ledger.account(aggregator).aggregator, "flag cleared");
    }

    function test_renounceRole_contributorLowersCount() public {
        uint256 count = ledger.contributorCount();
        bytes32 role = CONTRIBUTOR;
        vm.prank(contributors[0]);
        ledger.renounceRole(role, contributors[0]);
        assertEq(ledger.contributorCount(), count - 1, "count");
        assertFalse(ledger.account(contributors[0]).contributor, "flag cleared");
    }

    // ─── createTask ───

    function test_createTask_storesParamsAndOpensRoundOne() public {
        IMeshLedger.TaskParams memory p = _params();
        p.rule = 1;
        p.ruleParam = (uint32(2_500) << 16) | 1_000; // clip 2.5, trim 10 % per side
        vm.expectEmit(address(ledger));
        emit IMeshLedger.TaskCreated(2, admin, p);
        vm.expectEmit(address(ledger));
        emit IMeshLedger.RoundOpened(2, 1, admin, GENESIS, uint64(block.timestamp));
        vm.prank(admin);
        uint256 id = ledger.createTask(p);
        assertEq(id, 2, "second task");
        (IMeshLedger.TaskParams memory got, uint32 round) = ledger.task(id);
        assertEq(round, 1, "round 1");
        assertEq(got.specDigest, SPEC, "spec");
        assertEq(got.genesisDigest, GENESIS, "genesis");
        assertEq(got.rule, 1, "rule");
        assertEq(got.ruleParam, p.ruleParam, "rule param");
        assertEq(got.quorum, QUORUM, "quorum");
        assertEq(got.submissionWindow, SUBMISSION_WINDOW, "submission window");
        assertEq(got.voteWindow, VOTE_WINDOW, "vote window");
        assertEq(got.rewardPerRound, BUDGET, "budget");
        assertEq(ledger.baseDigest(id, 1), GENESIS, "base of round 1");
    }

    function test_createTask_revertsWhenNotAdmin() public {
        IMeshLedger.TaskParams memory p = _params();
        vm.prank(stranger);
        vm.expectRevert(
            abi.encodeWithSelector(IAccessControl.AccessControlUnauthorizedAccount.selector, stranger, ADMIN_ROLE)
        );
        ledger.createTask(p);
    }

    function test_createTask_revertsOnZeroSpec() public {
        IMeshLedger.TaskParams memory p = _params();
        p.specDigest = 0;
        _expectCreateRevert(p, abi.encodeWithSelector(IMeshLedger.MeshLedger_InvalidDigest.selector, bytes32(0)));
    }

    function test_createTask_revertsOnZeroGenesis() public {
        IMeshLedger.TaskParams memory p = _params();
        p.genesisDigest = 0;
        _expectCreateRevert(p, abi.encodeWithSelector(IMeshLedger.MeshLedger_InvalidDigest.selector, bytes32(0)));
    }

    function test_createTask_revertsOnUnknownRule() public {
        _expectRuleRevert(4, 0);
    }

    function test_createTask_revertsOnFedAvgWithArgument() public {
        _expectRuleRevert(0, 1);
    }

    function test_createTask_revertsOnMedianWithArgument() public {
        _expectRuleRevert(2, 7);
    }

    function test_createTask_revertsOnTrimmedMeanWithoutTrim() public {
        _expectRuleRevert(1, 0);
    }

    function test_createTask_revertsOnTrimmedMeanTrimmingHalf() public {
        _expectRuleRevert(1, 5_000);
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

    function test_createTask_revertsOnZeroSubmissionWindow() public {
        IMeshLedger.TaskParams memory p = _params();
        p.submissionWindow = 0;
        _expectCreateRevert(
            p, abi.encodeWithSelector(IMeshLedger.MeshLedger_InvalidWindows.selector, uint32(0), p.voteWindow)
        );
    }

    function test_createTask_revertsOnZeroVoteWindow() public {
        IMeshLedger.TaskParams memory p = _params();
        p.voteWindow = 0;
        _expectCreateRevert(
            p, abi.encodeWithSelector(IMeshLedger.MeshLedger_InvalidWindows.selector, p.submissionWindow, uint32(0))
        );
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

    // ─── pause / unpause ───

    function test_pause_stopsSubmissionsVotesAndFinalization() public {
        _submit(0);
        vm.prank(admin);
        ledger.pause();
        assertTrue(ledger.paused(), "paused");
        uint32 round = _round();
        bytes32 digest = _digest(1);

        vm.prank(contributors[1]);
        vm.expectRevert(Pausable.EnforcedPause.selector);
        ledger.submitUpdate(taskId, round, digest, 1);

        IMeshLedger.SignedSubmission memory sub = _signed(2, 10, 0, uint64(block.timestamp + 1 hours));
        vm.expectRevert(Pausable.EnforcedPause.selector);
        ledger.submitUpdateFor(taskId, round, sub);

        IMeshLedger.SignedSubmission[] memory subs = new IMeshLedger.SignedSubmission[](1);
        subs[0] = sub;
        vm.expectRevert(Pausable.EnforcedPause.selector);
        ledger.submitUpdatesFor(taskId, round, subs);

        vm.startPrank(validatorAddrs[0]);
        vm.expectRevert(Pausable.EnforcedPause.selector);
        ledger.vote(taskId, round, 0, true, 0);
        vm.expectRevert(Pausable.EnforcedPause.selector);
        ledger.voteBatch(taskId, round, 1, 1, hex"00");
        vm.stopPrank();

        vm.warp(block.timestamp + SUBMISSION_WINDOW + VOTE_WINDOW);
        vm.prank(aggregator);
        vm.expectRevert(Pausable.EnforcedPause.selector);
        ledger.finalizeRound(taskId, round, GENESIS, 0);
    }

    function test_pause_revertsWhenNotAdmin() public {
        vm.prank(stranger);
        vm.expectRevert(
            abi.encodeWithSelector(IAccessControl.AccessControlUnauthorizedAccount.selector, stranger, ADMIN_ROLE)
        );
        ledger.pause();
    }

    function test_pause_revertsWhenPaused() public {
        vm.startPrank(admin);
        ledger.pause();
        vm.expectRevert(Pausable.EnforcedPause.selector);
        ledger.pause();
        vm.stopPrank();
    }

    function test_unpause_resumesSubmissions() public {
        vm.startPrank(admin);
        ledger.pause();
        ledger.unpause();
        vm.stopPrank();
        assertFalse(ledger.paused(), "unpaused");
        assertEq(_submit(0), 0, "submits again");
    }

    function test_unpause_revertsWhenNotPaused() public {
        vm.prank(admin);
        vm.expectRevert(Pausable.ExpectedPause.selector);
        ledger.unpause();
    }

    function test_unpause_revertsWhenNotAdmin() public {
        vm.prank(admin);
        ledger.pause();
        vm.prank(stranger);
        vm.expectRevert(
            abi.encodeWithSelector(IAccessControl.AccessControlUnauthorizedAccount.selector, stranger, ADMIN_ROLE)
        );
        ledger.unpause();
    }

    function test_supportsInterface_accessControl() public view {
        assertTrue(ledger.supportsInterface(type(IAccessControl).interfaceId), "IAccessControl");
    }

    // silence "unused import" for MeshToken, which the fixture deploys
    function test_token_isMeshToken() public view {
        assertEq(MeshToken(address(token)).minter(), address(ledger), "ledger mints");
    }
}
