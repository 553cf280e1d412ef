// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

/// @title CodeHolder
/// @notice Stores an arbitrary byte string as its own runtime code (the SSTORE2 pattern). It exists so that
/// PancakeV3PoolDeployer can deploy the REAL PancakeV3Pool creation code taken from the PancakeSwap
/// v3-core npm artifact, without us compiling Pancake's 0.7.6 sources: deploy a CodeHolder with the pool creation
/// code as the constructor argument, then hand its address to the deployer, which EXTCODECOPYs it.
/// @dev The stored code is subject to EIP-170 (24576 bytes); PancakeV3Pool's creation code is 23566 bytes.
/// Never call a CodeHolder: its runtime code is whatever bytes it was given.
contract CodeHolder {
    constructor(bytes memory code) {
        assembly {
            return(add(code, 32), mload(code))
        }
    }
}
