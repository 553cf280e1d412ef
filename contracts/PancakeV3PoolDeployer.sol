// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

/// @dev Same interface as IPancakeV3PoolDeployer in the PancakeSwap v3-core npm package (declared here to stay MIT and 0.8).
interface IPancakeV3PoolDeployer {
    function parameters()
        external
        view
        returns (address factory, address token0, address token1, uint24 fee, int24 tickSpacing);

    function deploy(address factory, address token0, address token1, uint24 fee, int24 tickSpacing)
        external
        returns (address pool);
}

/// @title PancakeV3PoolDeployer
/// @notice Drop-in replacement for PancakeSwap V3's PancakeV3PoolDeployer. It exists because the
/// PancakeSwap v3-core npm package ships artifacts only for PancakeV3Factory and PancakeV3Pool, not for the
/// deployer, which the factory needs (constructor(address _poolDeployer)). It behaves like the real one:
/// `setFactoryAddress` may be called once, `deploy` only by that factory, `parameters` is set transiently
/// while the pool constructor reads it, and pools are created with CREATE2 using
/// salt = keccak256(abi.encode(token0, token1, fee)) and the unmodified pool creation code, so pool
/// addresses match Pancake's PoolAddress.computeAddress(deployer, key) with
/// POOL_INIT_CODE_HASH = 0x6ce8eb472fa82df5469c6ab6d485f17c3ad13c8cd7af59b3d4a8026c5ce0f7e2.
/// @dev The pool creation code is read with EXTCODECOPY from `poolCodeHolder` (a CodeHolder deployed with
/// the creation code from the npm artifact), since we do not compile Pancake's sources.
contract PancakeV3PoolDeployer is IPancakeV3PoolDeployer {
    struct Parameters {
        address factory;
        address token0;
        address token1;
        uint24 fee;
        int24 tickSpacing;
    }

    /// @inheritdoc IPancakeV3PoolDeployer
    Parameters public override parameters;

    address public factoryAddress;

    /// @notice Contract whose runtime code is the PancakeV3Pool creation code.
    address public immutable poolCodeHolder;

    event SetFactoryAddress(address indexed factory);

    modifier onlyFactory() {
        require(msg.sender == factoryAddress, "only factory can call deploy");
        _;
    }

    constructor(address poolCodeHolder_) {
        require(poolCodeHolder_.code.length > 0, "empty code holder");
        poolCodeHolder = poolCodeHolder_;
    }

    function setFactoryAddress(address _factoryAddress) external {
        require(factoryAddress == address(0), "already initialized");
        factoryAddress = _factoryAddress;
        emit SetFactoryAddress(_factoryAddress);
    }

    /// @inheritdoc IPancakeV3PoolDeployer
    function deploy(address factory, address token0, address token1, uint24 fee, int24 tickSpacing)
        external
        override
        onlyFactory
        returns (address pool)
    {
        parameters = Parameters({factory: factory, token0: token0, token1: token1, fee: fee, tickSpacing: tickSpacing});
        bytes32 salt = keccak256(abi.encode(token0, token1, fee));
        address holder = poolCodeHolder;
        assembly ("memory-safe") {
            // Scratch use of free memory (never allocated): copy the creation code and CREATE2 it.
            let size := extcodesize(holder)
            let ptr := mload(0x40)
            extcodecopy(holder, ptr, 0, size)
            pool := create2(0, ptr, size, salt)
            if iszero(pool) {
                // Bubble up the pool constructor's revert data, as `new` would.
                returndatacopy(ptr, 0, returndatasize())
                revert(ptr, returndatasize())
            }
        }
        delete parameters;
    }
}
