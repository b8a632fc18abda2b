// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

import {IMeshLedger} from "../../src/interfaces/IMeshLedger.sol";
import {Fixture} from "../utils/Fixture.sol";

/// Relayed submissions under fuzzed keys, nonces, deadlines, chain ids and fields.
contract SignatureFuzzTest is Fixture {
    uint256 internal constant SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141;

    function testFuzz_submitUpdateFor_acceptsTheContributorsSignature(bytes32 digest, uint64 samples, uint64 ttl)
        public
    {
        vm.assume(digest != 0);
        samples = uint64(bound(samples, 1, MAX_SAMPLES));
        uint64 deadline = uint64(bound(ttl, block.timestamp, type(uint64).max));
        IMeshLedger.SignedSubmission memory sub =
            _signedWith(contributorKeys[0], contributors[0], 1, digest, samples, 0, deadline);
        ledger.submitUpdateFor(taskId, 1, sub);
        (address who, uint64 got) = ledger.submission(taskId, 1, 0);
        assertEq(who, contributors[0], "contributor");
        assertEq(got, samples, "samples");
        assertEq(ledger.nonces(contributors[0]), 1, "nonce consumed");
    }

    function testFuzz_submitUpdateFor_rejectsAnyOtherSigner(uint256 key) public {
        key = bound(key, 1, SECP256K1_N - 1);
        vm.assume(key != contributorKeys[0]);
        address signer = vm.addr(key);
        IMeshLedger.SignedSubmission memory sub =
            _signedWith(key, contributors[0], 1, _digest(0), 10, 0, uint64(block.timestamp + 1));
        vm.expectRevert(
            abi.encodeWithSelector(IMeshLedger.MeshLedger_InvalidSignature.selector, contributors[0], signer)
        );
        ledger.submitUpdateFor(taskId, 1, sub);
    }

    function testFuzz_submitUpdateFor_rejectsReplayedNonce(bytes32 digest, uint64 samples) public {
        vm.assume(digest != 0);
        samples = uint64(bound(samples, 1, MAX_SAMPLES));
        IMeshLedger.SignedSubmission memory sub =
            _signedWith(contributorKeys[1], contributors[1], 1, digest, samples, 0, uint64(block.timestamp + 1 days));
        ledger.submitUpdateFor(taskId, 1, sub);
        vm.expectRevert(
            abi.encodeWithSelector(IMeshLedger.MeshLedger_InvalidNonce.selector, contributors[1], uint64(1), uint64(0))
        );
        ledger.submitUpdateFor(taskId, 1, sub);
    }

    function testFuzz_submitUpdateFor_rejectsAnyNonceButTheNext(uint64 nonce) public {
        vm.assume(nonce != 0);
        IMeshLedger.SignedSubmission memory sub =
            _signedWith(contributorKeys[1], contributors[1], 1, _digest(1), 5, nonce, uint64(block.timestamp));
        vm.expectRevert(
            abi.encodeWithSelector(IMeshLedger.MeshLedger_InvalidNonce.selector, contributors[1], uint64(0), nonce)
        );
        ledger.submitUpdateFor(taskId, 1, sub);
    }

    function testFuzz_submitUpdateFor_rejectsExpiredDeadline(uint64 deadline, uint256 lateBy) public {
        deadline = uint64(bound(deadline, 0, START_TIME - 1));
        IMeshLedger.SignedSubmission memory sub =
            _signedWith(contributorKeys[2], contributors[2], 1, _digest(2), 5, 0, deadline);
        lateBy = bound(lateBy, 0, SUBMISSION_WINDOW - 1);
        vm.warp(START_TIME + lateBy);
        vm.expectRevert(
            abi.encodeWithSelector(
                IMeshLedger.MeshLedger_SignatureExpired.selector, contributors[2], deadline, START_TIME + lateBy
            )
        );
        ledger.submitUpdateFor(taskId, 1, sub);
    }

    function testFuzz_submitUpdateFor_rejectsSignatureFromOtherChain(uint64 otherChain) public {
        vm.assume(otherChain != 31_337 && otherChain != 0);
        uint256 home = 31_337; // block.chainid may be re-read after vm.chainId under via-IR
        vm.chainId(otherChain);
        // The domain separator follows the chain id: this signature is valid only on `otherChain`.
        IMeshLedger.SignedSubmission memory sub =
            _signedWith(contributorKeys[3], contributors[3], 1, _digest(3), 5, 0, uint64(block.timestamp + 1));
        vm.chainId(home);
        vm.expectRevert(); // recovers an unrelated address
        ledger.submitUpdateFor(taskId, 1, sub);
        vm.chainId(otherChain);
        ledger.submitUpdateFor(taskId, 1, sub); // and it is accepted there
        assertEq(ledger.nonces(contributors[3]), 1, "accepted on its own chain");
    }

    function testFuzz_submitUpdateFor_rejectsAnyAlteredField(uint8 field, uint64 delta) public {
        delta = uint64(bound(delta, 1, type(uint32).max));
        IMeshLedger.SignedSubmission memory sub =
            _signedWith(contributorKeys[0], contributors[0], 1, _digest(0), 1_000, 0, uint64(block.timestamp + 100));
        field = uint8(bound(field, 0, 2));
        if (field == 0) sub.digest = bytes32(uint256(sub.digest) ^ delta);
        else if (field == 1) sub.numSamples += delta;
        else sub.deadline += delta;
        vm.expectRevert(); // InvalidSignature with whatever address the altered message recovers to
        ledger.submitUpdateFor(taskId, 1, sub);
        assertEq(ledger.nonces(contributors[0]), 0, "nothing consumed");
    }

    function testFuzz_submitUpdatesFor_batchOfValidSignaturesAllLand(uint8 size, uint64 seed) public {
        size = uint8(bound(size, 1, contributors.length));
        IMeshLedger.SignedSubmission[] memory subs = new IMeshLedger.SignedSubmission[](size);
        for (uint256 i; i < size; ++i) {
            uint64 samples = uint64(bound(uint256(keccak256(abi.encode(seed, i))), 1, MAX_SAMPLES));
            subs[i] = _signedWith(
                contributorKeys[i], contributors[i], 1, _digest(i), samples, 0, uint64(block.timestamp + 1)
            );
        }
        ledger.submitUpdatesFor(taskId, 1, subs);
        assertEq(ledger.roundView(taskId, 1).submissionCount, size, "all recorded");
    }
}
