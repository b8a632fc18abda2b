// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";

import {MeshToken} from "../../src/MeshToken.sol";
import {IMeshToken} from "../../src/interfaces/IMeshToken.sol";
import {Test} from "../utils/Test.sol";

contract MeshTokenTest is Test {
    MeshToken internal token;
    address internal ledger = address(0x1ED6E5);
    address internal alice = address(0xA11CE);
    address internal bob = address(0xB0B);

    function setUp() public {
        token = new MeshToken();
    }

    function test_constructor_setsMetadataAndDeployer() public view {
        assertEq(keccak256(bytes(token.name())), keccak256("meshprov reward"), "name");
        assertEq(keccak256(bytes(token.symbol())), keccak256("MESH"), "symbol");
        assertEq(token.decimals(), 18, "decimals");
        assertEq(token.deployer(), address(this), "deployer");
        assertEq(token.minter(), address(0), "no minter yet");
        assertEq(token.totalSupply(), 0, "no supply");
    }

    function test_setMinter_setsOnceAndEmits() public {
        vm.expectEmit(address(token));
        emit IMeshToken.MinterSet(ledger, address(this));
        token.setMinter(ledger);
        assertEq(token.minter(), ledger, "minter");
    }

    function test_setMinter_revertsWhenNotDeployer() public {
        vm.prank(alice);
        vm.expectRevert(abi.encodeWithSelector(IMeshToken.MeshToken_NotDeployer.selector, alice, address(this)));
        token.setMinter(alice);
    }

    function test_setMinter_revertsWhenAlreadySet() public {
        token.setMinter(ledger);
        vm.expectRevert(abi.encodeWithSelector(IMeshToken.MeshToken_MinterAlreadySet.selector, ledger));
        token.setMinter(alice);
    }

    function test_setMinter_revertsOnZero() public {
        vm.expectRevert(IMeshToken.MeshToken_ZeroMinter.selector);
        token.setMinter(address(0));
    }

    function test_mint_mintsForMinter() public {
        token.setMinter(ledger);
        vm.expectEmit(address(token));
        emit IERC20.Transfer(address(0), alice, 5);
        vm.prank(ledger);
        token.mint(alice, 5);
        assertEq(token.balanceOf(alice), 5, "balance");
        assertEq(token.totalSupply(), 5, "supply");
    }

    function test_mint_revertsWhenNotMinter() public {
        token.setMinter(ledger);
        vm.expectRevert(abi.encodeWithSelector(IMeshToken.MeshToken_NotMinter.selector, address(this), ledger));
        token.mint(alice, 1);
    }

    function test_mint_revertsBeforeMinterSet() public {
        vm.prank(ledger);
        vm.expectRevert(abi.encodeWithSelector(IMeshToken.MeshToken_NotMinter.selector, ledger, address(0)));
        token.mint(alice, 1);
    }

    function test_mintBatch_mintsEveryAmount() public {
        token.setMinter(ledger);
        address[] memory to = new address[](2);
        to[0] = alice;
        to[1] = bob;
        uint256[] memory amounts = new uint256[](2);
        amounts[0] = 7;
        amounts[1] = 11;
        vm.prank(ledger);
        token.mintBatch(to, amounts);
        assertEq(token.balanceOf(alice), 7, "alice");
        assertEq(token.balanceOf(bob), 11, "bob");
        assertEq(token.totalSupply(), 18, "supply");
    }

    function test_mintBatch_revertsWhenNotMinter() public {
        token.setMinter(ledger);
        vm.expectRevert(abi.encodeWithSelector(IMeshToken.MeshToken_NotMinter.selector, alice, ledger));
        vm.prank(alice);
        token.mintBatch(new address[](0), new uint256[](0));
    }

    function test_mintBatch_revertsOnLengthMismatch() public {
        token.setMinter(ledger);
        vm.prank(ledger);
        vm.expectRevert(abi.encodeWithSelector(IMeshToken.MeshToken_LengthMismatch.selector, 2, 1));
        token.mintBatch(new address[](2), new uint256[](1));
    }

    function test_transfer_movesTokens() public {
        token.setMinter(ledger);
        vm.prank(ledger);
        token.mint(alice, 10);
        vm.prank(alice);
        token.transfer(bob, 4);
        assertEq(token.balanceOf(bob), 4, "bob");
        assertEq(token.balanceOf(alice), 6, "alice");
    }
}
