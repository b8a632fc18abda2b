// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";

import {IMeshToken} from "./interfaces/IMeshToken.sol";

/// @title MeshToken
/// @notice ERC-20 "meshprov reward" (MESH, 18 decimals). Tokens come into existence only as round rewards
/// minted by the ledger; there is no other supply, no owner and no burn.
contract MeshToken is ERC20, IMeshToken {
    /// @inheritdoc IMeshToken
    address public immutable deployer;
    /// @inheritdoc IMeshToken
    address public minter;

    constructor() ERC20("meshprov reward", "MESH") {
        deployer = msg.sender;
    }

    modifier onlyMinter() {
        if (msg.sender != minter) revert MeshToken_NotMinter(msg.sender, minter);
        _;
    }

    /// @inheritdoc IMeshToken
    function setMinter(address minter_) external {
        if (msg.sender != deployer) revert MeshToken_NotDeployer(msg.sender, deployer);
        if (minter != address(0)) revert MeshToken_MinterAlreadySet(minter);
        if (minter_ == address(0)) revert MeshToken_ZeroMinter();
        minter = minter_;
        emit MinterSet(minter_, msg.sender);
    }

    /// @inheritdoc IMeshToken
    function mint(address to, uint256 amount) external onlyMinter {
        _mint(to, amount);
    }

    /// @inheritdoc IMeshToken
    function mintBatch(address[] calldata recipients, uint256[] calldata amounts) external onlyMinter {
        if (recipients.length != amounts.length) revert MeshToken_LengthMismatch(recipients.length, amounts.length);
        for (uint256 i; i < recipients.length; ++i) {
            _mint(recipients[i], amounts[i]);
        }
    }
}
