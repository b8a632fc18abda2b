// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

import {Revocations} from "../../src/Revocations.sol";
import {IMeshLedger} from "../../src/interfaces/IMeshLedger.sol";
import {Fixture} from "../utils/Fixture.sol";

/// R8: a revocation takes approvers holding more than half of the current validator weight, counted from the
/// ledger at each approval; nobody else can revoke; a revocation is final.
contract RevocationsTest is Fixture {
    Revocations internal revocations;
    bytes32 internal constant DIGEST = keccak256("poisoned update");
    bytes32 internal constant EVIDENCE = keccak256("rejudge report");

    event RevocationApproved(
        bytes32 indexed digest,
        address indexed validator,
        uint8 reason,
        bytes32 evidence,
        uint256 approvedWeight,
        uint256 totalWeight
    );
    event UpdateRevoked(
        bytes32 indexed digest, uint8 reason, bytes32 evidence, uint256 approvedWeight, uint256 totalWeight
    );

    function setUp() public override {
        _deploy(4, 4);
        revocations = new Revocations(IMeshLedger(address(ledger)));
    }

    function _approve(uint256 v) internal {
        vm.prank(validatorAddrs[v]);
        revocations.approveRevocation(DIGEST, 1, EVIDENCE);
    }

    function test_halfTheWeightIsNotEnough_moreThanHalfRevokes() public {
        _approve(0);
        _approve(1);
        assertFalse(revocations.isRevoked(DIGEST), "two of four equal validators are exactly half: not revoked");
        vm.expectEmit(address(revocations));
        emit UpdateRevoked(DIGEST, 1, EVIDENCE, 15_000, 20_000);
        _approve(2);
        assertTrue(revocations.isRevoked(DIGEST), "three of four revoke");
        (uint8 reason, bytes32 evidence, bool revoked, address[] memory approvers,,) = revocations.revocation(DIGEST);
        assertEq(uint256(reason), 1, "reason kept");
        assertEq(evidence, EVIDENCE, "evidence kept");
        assertTrue(revoked, "final");
        assertEq(approvers.length, 3, "approvers listed");
    }

    function test_approvalIsAnEventWithTheWeights() public {
        vm.expectEmit(address(revocations));
        emit RevocationApproved(DIGEST, validatorAddrs[0], 1, EVIDENCE, 5_000, 20_000);
        _approve(0);
    }

    function test_onlyCurrentValidatorsApprove() public {
        vm.prank(admin);
        vm.expectRevert(abi.encodeWithSelector(Revocations.Revocations_NotValidator.selector, admin));
        revocations.approveRevocation(DIGEST, 1, EVIDENCE);
        vm.prank(contributors[0]);
        vm.expectRevert(abi.encodeWithSelector(Revocations.Revocations_NotValidator.selector, contributors[0]));
        revocations.approveRevocation(DIGEST, 1, EVIDENCE);
        vm.prank(aggregator);
        vm.expectRevert(abi.encodeWithSelector(Revocations.Revocations_NotValidator.selector, aggregator));
        revocations.approveRevocation(DIGEST, 1, EVIDENCE);
    }

    function test_aValidatorThatLeavesNoLongerCounts() public {
        _approve(0);
        _approve(1);
        vm.prank(validatorAddrs[0]);
        ledger.renounceRole(VALIDATOR, validatorAddrs[0]);
        _approve(2);
        // Counted at approval time from the ledger: {1, 2} of the three left is more than half.
        assertTrue(revocations.isRevoked(DIGEST), "2 of the 3 remaining revoke");
        (,,,, uint256 approved, uint256 total) = revocations.revocation(DIGEST);
        assertEq(approved, 10_000, "the one that left does not count");
        assertEq(total, 15_000, "total of the current validators");
    }

    function test_aLeaverCannotTipIt() public {
        _approve(0);
        vm.prank(validatorAddrs[0]);
        ledger.renounceRole(VALIDATOR, validatorAddrs[0]);
        _approve(1);
        assertFalse(revocations.isRevoked(DIGEST), "1 of 3 current: the leaver's approval is not counted");
    }

    function test_sameReasonAndEvidence_once_andFinal() public {
        _approve(0);
        vm.prank(validatorAddrs[1]);
        vm.expectRevert(abi.encodeWithSelector(Revocations.Revocations_ReasonDiffers.selector, uint8(1), uint8(2)));
        revocations.approveRevocation(DIGEST, 2, EVIDENCE);
        vm.prank(validatorAddrs[1]);
        vm.expectRevert(
            abi.encodeWithSelector(Revocations.Revocations_EvidenceDiffers.selector, EVIDENCE, bytes32(uint256(7)))
        );
        revocations.approveRevocation(DIGEST, 1, bytes32(uint256(7)));
        vm.prank(validatorAddrs[0]);
        vm.expectRevert(abi.encodeWithSelector(Revocations.Revocations_AlreadyApproved.selector, validatorAddrs[0]));
        revocations.approveRevocation(DIGEST, 1, EVIDENCE);
        _approve(1);
        _approve(2);
        vm.prank(validatorAddrs[3]);
        vm.expectRevert(abi.encodeWithSelector(Revocations.Revocations_AlreadyRevoked.selector, DIGEST));
        revocations.approveRevocation(DIGEST, 1, EVIDENCE);
    }

    function test_badInput() public {
        vm.prank(validatorAddrs[0]);
        vm.expectRevert(Revocations.Revocations_ZeroDigest.selector);
        revocations.approveRevocation(bytes32(0), 1, EVIDENCE);
        vm.prank(validatorAddrs[0]);
        vm.expectRevert(abi.encodeWithSelector(Revocations.Revocations_BadReason.selector, uint8(0)));
        revocations.approveRevocation(DIGEST, 0, EVIDENCE);
        vm.prank(validatorAddrs[0]);
        vm.expectRevert(abi.encodeWithSelector(Revocations.Revocations_BadReason.selector, uint8(5)));
        revocations.approveRevocation(DIGEST, 5, EVIDENCE);
        vm.expectRevert(Revocations.Revocations_ZeroLedger.selector);
        new Revocations(IMeshLedger(address(0)));
    }
}
