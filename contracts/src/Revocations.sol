// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

import {IMeshLedger} from "./interfaces/IMeshLedger.sol";

/// @title Revocations (protocol v2, R8)
/// @notice Marks an update revoked, for good, when validators holding more than half of the current validators'
/// reputation approve it. Nothing of the past is rewritten: the ledger's rounds, rewards and aggregates stay as
/// they are; the index and `meshprov audit taint` propagate the mark to every later model. docs/protocol.md R8.
/// @dev Reads the ledger at each call (its validators and their validator reputations), so a validator that
/// approves and then loses its role or reputation no longer counts. Revocation is by digest: past submissions
/// are in the ledger's logs, not its storage, and the index maps a digest to its rounds.
contract Revocations {
    /// @notice Reason codes (the first approval fixes one).
    uint8 public constant POISONED = 1;
    uint8 public constant DATA_WITHDRAWN = 2;
    uint8 public constant LICENSE = 3;
    uint8 public constant OTHER = 4;

    /// @notice The ledger whose validators decide.
    IMeshLedger public immutable ledger;

    struct Proposal {
        uint8 reason;
        bool revoked;
        bytes32 evidence;
        address[] approvers;
    }

    mapping(bytes32 digest => Proposal) private _proposals;

    /// @notice `validator` approved revoking `digest`; `approvedWeight` of `totalWeight` (current validator
    /// reputation of the approvers still holding the role, and of every validator) now approve.
    event RevocationApproved(
        bytes32 indexed digest,
        address indexed validator,
        uint8 reason,
        bytes32 evidence,
        uint256 approvedWeight,
        uint256 totalWeight
    );
    /// @notice `digest` is revoked: approvers holding more than half of the validator weight agreed.
    event UpdateRevoked(
        bytes32 indexed digest, uint8 reason, bytes32 evidence, uint256 approvedWeight, uint256 totalWeight
    );

    error Revocations_ZeroLedger();
    error Revocations_NotValidator(address account);
    error Revocations_ZeroDigest();
    error Revocations_BadReason(uint8 reason);
    error Revocations_ReasonDiffers(uint8 proposed, uint8 given);
    error Revocations_EvidenceDiffers(bytes32 proposed, bytes32 given);
    error Revocations_AlreadyApproved(address validator);
    error Revocations_AlreadyRevoked(bytes32 digest);

    constructor(IMeshLedger ledger_) {
        if (address(ledger_) == address(0)) revert Revocations_ZeroLedger();
        ledger = ledger_;
    }

    /// @notice Approve revoking `digest` for `reason` with `evidence` (the digest of a document in the store).
    /// The first approval proposes; the others must name the same reason and evidence. Emits `UpdateRevoked` with
    /// the approval that takes the approvers past half of the current validator weight.
    function approveRevocation(bytes32 digest, uint8 reason, bytes32 evidence) external {
        if (digest == bytes32(0)) revert Revocations_ZeroDigest();
        if (reason < POISONED || reason > OTHER) revert Revocations_BadReason(reason);
        Proposal storage p = _proposals[digest];
        if (p.revoked) revert Revocations_AlreadyRevoked(digest);
        address[] memory current = ledger.validators();
        if (!_contains(current, msg.sender)) revert Revocations_NotValidator(msg.sender);
        if (p.approvers.length == 0) {
            p.reason = reason;
            p.evidence = evidence;
        } else {
            if (p.reason != reason) revert Revocations_ReasonDiffers(p.reason, reason);
            if (p.evidence != evidence) revert Revocations_EvidenceDiffers(p.evidence, evidence);
            if (_contains(p.approvers, msg.sender)) revert Revocations_AlreadyApproved(msg.sender);
        }
        p.approvers.push(msg.sender);
        (uint256 approved, uint256 total) = _weights(current, p.approvers);
        emit RevocationApproved(digest, msg.sender, reason, evidence, approved, total);
        if (2 * approved > total) {
            p.revoked = true;
            emit UpdateRevoked(digest, reason, evidence, approved, total);
        }
    }

    /// @notice A revocation's state: its reason and evidence (0 when none was proposed), whether it is final, and
    /// the weight of its approvers now against the current total.
    function revocation(bytes32 digest)
        external
        view
        returns (
            uint8 reason,
            bytes32 evidence,
            bool revoked,
            address[] memory approvers,
            uint256 approvedWeight,
            uint256 totalWeight
        )
    {
        Proposal storage p = _proposals[digest];
        (approvedWeight, totalWeight) = _weights(ledger.validators(), p.approvers);
        return (p.reason, p.evidence, p.revoked, p.approvers, approvedWeight, totalWeight);
    }

    /// @notice Whether `digest` is revoked.
    function isRevoked(bytes32 digest) external view returns (bool) {
        return _proposals[digest].revoked;
    }

    function _weights(address[] memory current, address[] memory approvers)
        private
        view
        returns (uint256 approved, uint256 total)
    {
        for (uint256 i = 0; i < current.length; ++i) {
            (, uint32 weight) = ledger.reputation(current[i]);
            total += weight;
            if (_contains(approvers, current[i])) approved += weight;
        }
    }

    function _contains(address[] memory list, address who) private pure returns (bool) {
        for (uint256 i = 0; i < list.length; ++i) {
            if (list[i] == who) return true;
        }
        return false;
    }
}
