// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

import {MeshLedger} from "../../src/MeshLedger.sol";
import {MeshToken} from "../../src/MeshToken.sol";
import {IMeshLedger} from "../../src/interfaces/IMeshLedger.sol";
import {Test} from "./Test.sol";

/// @notice A deployed consortium: token, ledger, admin, aggregator, contributors and validators with known
/// keys, and one task in round 1. Helpers submit, vote and finalize as a given member.
abstract contract Fixture is Test {
    uint256 internal constant SUBMISSION_WINDOW = 1 hours;
    uint256 internal constant VOTE_WINDOW = 30 minutes;
    uint128 internal constant BUDGET = 1_000 ether;
    uint16 internal constant QUORUM = 2;
    uint256 internal constant START_TIME = 1_700_000_000;
    bytes32 internal constant SPEC = keccak256("spec");
    bytes32 internal constant GENESIS = keccak256("genesis");

    MeshToken internal token;
    MeshLedger internal ledger;
    address internal admin = address(0xAD);
    address internal aggregator = address(0xA66);
    address internal stranger = address(0x5757);

    uint256[] internal contributorKeys;
    address[] internal contributors;
    address[] internal validatorAddrs;

    uint256 internal taskId;

    // Role ids, read once: reading them from the ledger between vm.prank and the call would use up the prank.
    bytes32 internal constant ADMIN_ROLE = 0x00;
    bytes32 internal constant CONTRIBUTOR = keccak256("CONTRIBUTOR_ROLE");
    bytes32 internal constant VALIDATOR = keccak256("VALIDATOR_ROLE");
    bytes32 internal constant AGGREGATOR = keccak256("AGGREGATOR_ROLE");

    function setUp() public virtual {
        _deploy(4, 3);
    }

    function _deploy(uint256 nContributors, uint256 nValidators) internal {
        vm.warp(START_TIME);
        token = new MeshToken();
        ledger = new MeshLedger(admin, token);
        token.setMinter(address(ledger));
        vm.label(address(token), "MeshToken");
        vm.label(address(ledger), "MeshLedger");
        vm.label(admin, "admin");
        vm.label(aggregator, "aggregator");

        vm.startPrank(admin);
        ledger.grantRole(AGGREGATOR, aggregator);
        for (uint256 i; i < nContributors; ++i) {
            uint256 key = 0xC0000 + i + 1;
            contributorKeys.push(key);
            contributors.push(vm.addr(key));
            ledger.grantRole(CONTRIBUTOR, vm.addr(key));
        }
        for (uint256 i; i < nValidators; ++i) {
            address v = address(uint160(0xDA0000 + i + 1));
            validatorAddrs.push(v);
            ledger.grantRole(VALIDATOR, v);
        }
        taskId = ledger.createTask(_params());
        vm.stopPrank();
    }

    function _params() internal pure returns (IMeshLedger.TaskParams memory) {
        return IMeshLedger.TaskParams({
            specDigest: SPEC,
            genesisDigest: GENESIS,
            rule: 0,
            ruleParam: 0,
            quorum: QUORUM,
            submissionWindow: uint32(SUBMISSION_WINDOW),
            voteWindow: uint32(VOTE_WINDOW),
            rewardPerRound: BUDGET
        });
    }

    // ─── digests ───
    // Any nonzero 32 bytes will do for the contract; keccak256 (an opcode) rather than sha256 (a precompile
    // call) so that computing one between vm.prank/vm.expectRevert and the call under test is harmless.

    function _digest(uint256 i) internal pure returns (bytes32) {
        return keccak256(abi.encode("update", i));
    }

    function _aggregate(uint32 round) internal pure returns (bytes32) {
        return keccak256(abi.encode("aggregate", round));
    }

    // ─── submissions ───

    function _submit(uint256 i) internal returns (uint16) {
        return _submitAs(contributors[i], _round(), _digest(i), 100 + uint64(i));
    }

    function _submitAs(address who, uint32 round, bytes32 digest, uint64 samples) internal returns (uint16) {
        vm.prank(who);
        return ledger.submitUpdate(taskId, round, digest, samples);
    }

    function _submitAll() internal {
        for (uint256 i; i < contributors.length; ++i) {
            _submit(i);
        }
    }

    function _signed(uint256 i, uint64 samples, uint64 nonce, uint64 deadline)
        internal
        view
        returns (IMeshLedger.SignedSubmission memory sub)
    {
        return _signedWith(contributorKeys[i], contributors[i], _round(), _digest(i), samples, nonce, deadline);
    }

    function _signedWith(
        uint256 key,
        address contributor,
        uint32 round,
        bytes32 digest,
        uint64 samples,
        uint64 nonce,
        uint64 deadline
    ) internal view returns (IMeshLedger.SignedSubmission memory sub) {
        bytes32 hash = ledger.hashSubmission(taskId, round, digest, samples, nonce, deadline);
        (uint8 v, bytes32 r, bytes32 s) = vm.sign(key, hash);
        sub = IMeshLedger.SignedSubmission({
            contributor: contributor,
            digest: digest,
            numSamples: samples,
            nonce: nonce,
            deadline: deadline,
            v: v,
            r: r,
            s: s
        });
    }

    // ─── votes ───

    /// Validator `v` votes on every update of the live round: accept where `accepts` has the bit set.
    function _voteAll(uint256 v, uint256 accepts) internal {
        uint32 round = _round();
        uint16 n = ledger.roundView(taskId, round).submissionCount;
        uint256 indexes = (uint256(1) << n) - 1;
        bytes memory reasons = _reasons(indexes, accepts);
        vm.prank(validatorAddrs[v]);
        ledger.voteBatch(taskId, round, indexes, accepts & indexes, reasons);
    }

    function _reasons(uint256 indexes, uint256 accepts) internal pure returns (bytes memory out) {
        for (uint256 i; i < 256; ++i) {
            if ((indexes >> i) & 1 == 0) continue;
            out = bytes.concat(out, bytes1((accepts >> i) & 1 == 1 ? 0 : 15));
        }
    }

    // ─── rounds ───

    function _round() internal view returns (uint32) {
        return ledger.currentRound(taskId);
    }

    function _finalize(bytes32 aggregate, uint256 accepted) internal {
        uint32 round = _round();
        vm.prank(aggregator);
        ledger.finalizeRound(taskId, round, aggregate, accepted);
    }

    /// Every contributor submits, every validator accepts all but the updates in `rejected`; finalized early.
    function _playRound(uint256 rejected) internal returns (uint256 accepted) {
        _submitAll();
        uint256 all = (uint256(1) << contributors.length) - 1;
        accepted = all & ~rejected;
        for (uint256 v; v < validatorAddrs.length; ++v) {
            _voteAll(v, accepted);
        }
        uint32 round = _round();
        _finalize(accepted == 0 ? ledger.baseDigest(taskId, round) : _aggregate(round), accepted);
    }

    function _afterVoteWindow() internal {
        IMeshLedger.RoundView memory r = ledger.roundView(taskId, _round());
        vm.warp(r.voteEnd);
    }
}
