// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

import {Vm} from "./Vm.sol";

/// @notice The cheatcode handle, shared by tests and invariant handlers.
abstract contract CheatCodes {
    Vm internal constant vm = Vm(address(uint160(uint256(keccak256("hevm cheat code")))));

    /// @notice The block time now. Under via-IR the optimizer may re-read `block.timestamp` where a test kept it in
    /// a local before a `vm.warp`; the cheatcode's answer is an ordinary value that stays put.
    function _wallNow() internal view returns (uint256) {
        return vm.getBlockTimestamp();
    }

    /// @notice `x` mapped into [min, max] (inclusive), keeping small inputs stable for the fuzzer's shrinking.
    function bound(uint256 x, uint256 min, uint256 max) internal pure returns (uint256) {
        require(min <= max, "bound: min > max");
        if (x >= min && x <= max) return x;
        uint256 size = max - min + 1;
        if (size == 0) return x; // the whole uint256 range
        return min + (x % size);
    }
}

/// @notice A minimal test base: forge runs `test*` functions (a revert fails them), `testFuzz*`/`test_fuzz*`
/// with arguments as fuzz tests and `invariant*` functions as invariants; `setUp` runs before each.
abstract contract Test is CheatCodes {
    /// forge reads this to recognise test contracts (as it does for ds-test and forge-std).
    bool public IS_TEST = true;

    function assertTrue(bool condition, string memory what) internal pure {
        vm.assertTrue(condition, what);
    }

    function assertFalse(bool condition, string memory what) internal pure {
        vm.assertFalse(condition, what);
    }

    function assertEq(uint256 a, uint256 b, string memory what) internal pure {
        vm.assertEq(a, b, what);
    }

    function assertEq(int256 a, int256 b, string memory what) internal pure {
        vm.assertEq(a, b, what);
    }

    function assertEq(address a, address b, string memory what) internal pure {
        vm.assertEq(a, b, what);
    }

    function assertEq(bytes32 a, bytes32 b, string memory what) internal pure {
        vm.assertEq(a, b, what);
    }

    function assertEq(bool a, bool b, string memory what) internal pure {
        vm.assertEq(a, b, what);
    }

    function assertEq(bytes memory a, bytes memory b, string memory what) internal pure {
        vm.assertEq(a, b, what);
    }

    function assertLe(uint256 a, uint256 b, string memory what) internal pure {
        vm.assertLe(a, b, what);
    }

    function assertGe(uint256 a, uint256 b, string memory what) internal pure {
        vm.assertGe(a, b, what);
    }

    function assertLt(uint256 a, uint256 b, string memory what) internal pure {
        vm.assertLt(a, b, what);
    }
}

/// @notice What forge's invariant runner asks a test contract for (as forge-std's StdInvariant provides).
abstract contract InvariantTest is Test {
    struct FuzzSelector {
        address addr;
        bytes4[] selectors;
    }

    address[] private _targetContracts;
    FuzzSelector[] private _targetSelectors;
    address[] private _targetSenders;

    function targetContract(address target) internal {
        _targetContracts.push(target);
    }

    function targetSelector(FuzzSelector memory selector) internal {
        _targetSelectors.push(selector);
    }

    function targetSender(address sender) internal {
        _targetSenders.push(sender);
    }

    function targetContracts() public view returns (address[] memory) {
        return _targetContracts;
    }

    function targetSelectors() public view returns (FuzzSelector[] memory) {
        return _targetSelectors;
    }

    function targetSenders() public view returns (address[] memory) {
        return _targetSenders;
    }
}
