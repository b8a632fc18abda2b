// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

import {MeshLedger} from "../../src/MeshLedger.sol";
import {MeshToken} from "../../src/MeshToken.sol";
import {IMeshLedger} from "../../src/interfaces/IMeshLedger.sol";
import {Test} from "./Test.sol";

/// @notice A deployed consortium: token, ledger, admin, aggregator, contributors and validators with known
/// keys, and one task in round 1. Helpers submit, commit, reveal and finalize as a given member.
abstract contract Fixture is Test {
    uint256 internal constant SUBMISSION_WINDOW = 1 hours;
    uint256 internal constant COMMIT_WINDOW = 30 minutes;
    uint256 internal constant REVEAL_WINDOW = 30 minutes;
    uint256 internal constant FINALIZE_GRACE = 1 hours;
    uint64 internal constant MAX_SAMPLES = 1_000_000;
    uint64 internal constant ROLE_DELAY = 10 minutes;
    uint128 internal constant BUDGET = 1_000 ether;
    uint16 internal constant QUORUM = 2;
    uint256 internal constant START_TIME = 1_700_000_000;
    bytes32 internal constant SPEC = keccak256("spec");
    bytes32 internal constant GENESIS = keccak256("genesis");
    bytes32 internal constant SALT = keccak256("salt");

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
        delete contributors;
        delete contributorKeys;
        delete validatorAddrs;
        _deployLedger();
        _grantMembers(nContributors, nValidators);
        vm.prank(admin);
        taskId = ledger.createTask(_params());
    }

    function _deployLedger() internal {
        vm.warp(START_TIME);
        token = new MeshToken();
        ledger = new MeshLedger(admin, token, ROLE_DELAY);
        token.setMinter(address(ledger));
        vm.label(address(token), "MeshToken");
        vm.label(address(ledger), "MeshLedger");
        vm.label(admin, "admin");
        vm.label(aggregator, "aggregator");
    }

    function _grantMembers(uint256 nContributors, uint256 nValidators) internal {
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
        vm.stopPrank();
    }

    /// A role change as it must go once a task exists: scheduled by the admin, executed (by anyone: here a
    /// stranger) once the delay is over. Time moves forward by the delay.
    function _changeRole(bytes32 role, address who, bool grant) internal {
        vm.prank(admin);
        uint64 at = ledger.scheduleRoleChange(role, who, grant);
        if (block.timestamp < at) vm.warp(at);
        vm.prank(stranger);
        ledger.executeRoleChange(role, who, grant);
    }

    function _params() internal pure returns (IMeshLedger.TaskParams memory) {
        return IMeshLedger.TaskParams({
            specDigest: SPEC,
            genesisDigest: GENESIS,
            rule: 0,
            ruleParam: 0,
            quorum: QUORUM,
            submissionWindow: uint32(SUBMISSION_WINDOW),
            commitWindow: uint32(COMMIT_WINDOW),
            revealWindow: uint32(REVEAL_WINDOW),
            finalizeGrace: uint32(FINALIZE_GRACE),
            maxSamples: MAX_SAMPLES,
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

    // ─── scores ───

    /// `n` copies of `score`.
    function _uniform(uint256 n, int256 score) internal pure returns (int256[] memory out) {
        out = new int256[](n);
        for (uint256 i; i < n; ++i) {
            out[i] = score;
        }
    }

    /// Scores as revealed: 2 bytes each, big-endian two's complement.
    function _encode(int256[] memory scores) internal pure returns (bytes memory out) {
        out = new bytes(2 * scores.length);
        for (uint256 i; i < scores.length; ++i) {
            uint16 word = uint16(int16(scores[i]));
            out[2 * i] = bytes1(uint8(word >> 8));
            out[2 * i + 1] = bytes1(uint8(word));
        }
    }

    /// Reason codes: 15 where the score is the hard-reject -10_000, else 0.
    function _reasonsFor(int256[] memory scores) internal pure returns (bytes memory out) {
        out = new bytes(scores.length);
        for (uint256 i; i < scores.length; ++i) {
            out[i] = bytes1(scores[i] == -10_000 ? uint8(15) : uint8(0));
        }
    }

    function _commitment(address validator, int256[] memory scores) internal view returns (bytes32) {
        return keccak256(
            abi.encode(
                block.chainid,
                address(ledger),
                taskId,
                _round(),
                validator,
                keccak256(_encode(scores)),
                keccak256(_reasonsFor(scores)),
                SALT
            )
        );
    }

    function _commit(address validator, int256[] memory scores) internal {
        bytes32 c = _commitment(validator, scores);
        uint32 round = _round();
        vm.prank(validator);
        ledger.commitScores(taskId, round, c);
    }

    function _reveal(address validator, int256[] memory scores) internal {
        bytes memory encoded = _encode(scores);
        bytes memory reasons = _reasonsFor(scores);
        uint32 round = _round();
        vm.prank(validator);
        ledger.revealScores(taskId, round, encoded, reasons, SALT);
    }

    function _submissionCount() internal view returns (uint256) {
        return ledger.roundView(taskId, _round()).submissionCount;
    }

    // ─── rounds and time ───

    function _round() internal view returns (uint32) {
        return ledger.currentRound(taskId);
    }

    function _view() internal view returns (IMeshLedger.RoundView memory) {
        return ledger.roundView(taskId, _round());
    }

    /// Wall time that corresponds to ledger time `ledgerTime` now (the pause total so far is added back).
    function _wallOf(uint64 ledgerTime) internal view returns (uint256) {
        (uint64 ledgerNow,,) = ledger.clock();
        return block.timestamp + ledgerTime - ledgerNow;
    }

    function _toCommit() internal {
        uint64 end = _view().submissionEnd;
        (uint64 ledgerNow,,) = ledger.clock();
        if (ledgerNow < end) vm.warp(_wallOf(end));
    }

    function _toReveal() internal {
        uint64 end = _view().commitEnd;
        (uint64 ledgerNow,,) = ledger.clock();
        if (ledgerNow < end) vm.warp(_wallOf(end));
    }

    function _toRevealEnd() internal {
        vm.warp(_wallOf(_view().revealEnd));
    }

    function _toGraceEnd() internal {
        vm.warp(_wallOf(_view().graceEnd));
    }

    function _finalize(bytes32 aggregate) internal {
        uint32 round = _round();
        vm.prank(aggregator);
        ledger.finalizeRound(taskId, round, aggregate);
    }

    /// Every validator commits and reveals `scores[v]` (an empty row: validator v stays absent).
    function _scoreRound(int256[][] memory scores) internal {
        _toCommit();
        for (uint256 v; v < validatorAddrs.length; ++v) {
            if (scores[v].length != 0 || _submissionCount() == 0) _commit(validatorAddrs[v], scores[v]);
        }
        _toReveal();
        for (uint256 v; v < validatorAddrs.length; ++v) {
            if (scores[v].length != 0 || _submissionCount() == 0) _reveal(validatorAddrs[v], scores[v]);
        }
    }

    /// Every validator gives every update of the live round `score`.
    function _sameScores(int256 score) internal view returns (int256[][] memory rows) {
        rows = new int256[][](validatorAddrs.length);
        uint256 n = _submissionCount();
        for (uint256 v; v < rows.length; ++v) {
            rows[v] = _uniform(n, score);
        }
    }

    /// Every contributor submits, every validator scores every update `score`, and the aggregator finalizes
    /// (with the base when nothing is accepted).
    function _playRound(int256 score) internal {
        _submitAll();
        _scoreRound(_sameScores(score));
        uint32 round = _round();
        (, uint256 accepted) = ledger.tally(taskId, round);
        _finalize(accepted == 0 ? ledger.baseDigest(taskId, round) : _aggregate(round));
    }
}
