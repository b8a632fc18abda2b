// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";

/// @title IMeshToken
/// @notice The meshprov reward token: a plain ERC-20 whose supply is created only by the ledger, as rewards
/// at round finalization. The deployer names the minter once; nobody can change it afterwards.
interface IMeshToken is IERC20 {
    // ─── Errors ─────────────────────────────────────────────────────────────────────────────────────────────

    /// @notice `caller` tried to mint but only `minter` may.
    error MeshToken_NotMinter(address caller, address minter);

    /// @notice `caller` tried to set the minter but only the token's `deployer` may.
    error MeshToken_NotDeployer(address caller, address deployer);

    /// @notice The minter is already `minter`; it can be set only once.
    error MeshToken_MinterAlreadySet(address minter);

    /// @notice The zero address cannot be the minter.
    error MeshToken_ZeroMinter();

    /// @notice `mintBatch` got `recipients` addresses but `amounts` amounts.
    error MeshToken_LengthMismatch(uint256 recipients, uint256 amounts);

    // ─── Events ─────────────────────────────────────────────────────────────────────────────────────────────

    /// @notice The deployer `by` made `minter` the only account that can mint.
    event MinterSet(address indexed minter, address indexed by);

    // ─── Functions ──────────────────────────────────────────────────────────────────────────────────────────

    /// @notice The account that deployed the token; the only one allowed to call {setMinter}, once.
    function deployer() external view returns (address);

    /// @notice The only account that can mint (the ledger), or the zero address before {setMinter}.
    function minter() external view returns (address);

    /// @notice Make `minter_` the token's only minter.
    /// @dev Requirements: the caller is {deployer}; no minter was set before; `minter_` is not zero.
    /// Emits {MinterSet}.
    function setMinter(address minter_) external;

    /// @notice Create `amount` tokens for `to`.
    /// @dev Requirement: the caller is {minter}. Emits {IERC20-Transfer} from the zero address.
    function mint(address to, uint256 amount) external;

    /// @notice Create `amounts[i]` tokens for `recipients[i]` for every i, in one call.
    /// @dev Requirements: the caller is {minter}; both arrays have the same length.
    /// Emits one {IERC20-Transfer} from the zero address per recipient.
    function mintBatch(address[] calldata recipients, uint256[] calldata amounts) external;
}
