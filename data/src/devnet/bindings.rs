//! Typed bindings of the contracts the devnet deploys and drives.

#![allow(missing_docs, clippy::too_many_arguments)]

alloy::sol! {
    #[sol(rpc)]
    interface ITestToken {
        function mint(address to, uint256 amount) external;
        function approve(address spender, uint256 amount) external returns (bool);
        function balanceOf(address who) external view returns (uint256);
    }

    #[sol(rpc)]
    interface IUniswapV2Factory {
        function createPair(address tokenA, address tokenB) external returns (address pair);
        function getPair(address tokenA, address tokenB) external view returns (address pair);
    }

    #[sol(rpc)]
    interface IUniswapV2Pair {
        function getReserves() external view returns (uint112 reserve0, uint112 reserve1, uint32 blockTimestampLast);
    }

    #[sol(rpc)]
    interface IV3Factory {
        function createPool(address tokenA, address tokenB, uint24 fee) external returns (address pool);
        function getPool(address tokenA, address tokenB, uint24 fee) external view returns (address pool);
        function feeAmountTickSpacing(uint24 fee) external view returns (int24);
        function enableFeeAmount(uint24 fee, int24 tickSpacing) external;
    }

    #[sol(rpc)]
    interface IV3Pool {
        function initialize(uint160 sqrtPriceX96) external;
        // The leading words of every V3-style pool's slot0 (Slipstream's has no feeProtocol).
        function slot0() external view returns (uint160 sqrtPriceX96, int24 tick);
        function liquidity() external view returns (uint128);
    }

    #[sol(rpc)]
    interface IAerodromePoolFactory {
        function createPool(address tokenA, address tokenB, bool stable) external returns (address pool);
        function getPool(address tokenA, address tokenB, bool stable) external view returns (address);
        function getFee(address pool, bool stable) external view returns (uint256);
        function setCustomFee(address pool, uint256 fee) external;
    }

    #[sol(rpc)]
    interface ISlipstreamFactory {
        function createPool(address tokenA, address tokenB, int24 tickSpacing, uint160 sqrtPriceX96) external returns (address pool);
        function getPool(address tokenA, address tokenB, int24 tickSpacing) external view returns (address);
        function tickSpacingToFee(int24 tickSpacing) external view returns (uint24);
        function setSwapFeeModule(address module) external;
        function setUnstakedFeeModule(address module) external;
    }

    #[sol(rpc)]
    interface ISlipstreamPool {
        function fee() external view returns (uint24);
        function unstakedFee() external view returns (uint24);
        function stakedLiquidity() external view returns (uint128);
        function gaugeFees() external view returns (uint128 token0, uint128 token1);
        function feeGrowthGlobal0X128() external view returns (uint256);
        function feeGrowthGlobal1X128() external view returns (uint256);
    }

    #[sol(rpc)]
    interface ISlipstreamCustomFeeModule {
        function setCustomFee(address pool, uint24 fee) external;
    }

    #[sol(rpc)]
    interface ISlipstreamVoterStandIn {
        function setGauge(address pool, address gauge, address nft, bool alive) external;
    }

    #[sol(rpc)]
    interface ISlipstreamGaugeStandIn {
        function stake(address pool, int128 liquidityDelta, int24 tickLower, int24 tickUpper) external;
    }

    #[sol(rpc)]
    interface IPancakeV3PoolDeployer {
        function setFactoryAddress(address factory) external;
    }

    #[sol(rpc)]
    interface IDexlabRouter {
        function v2Swap(address pair, address tokenIn, uint256 amountIn, uint256 amountOutMin, address to, uint16 feeBps) external returns (uint256 amountOut);
        function v2AddLiquidity(address pair, uint256 amount0, uint256 amount1, address to) external returns (uint256 liquidity);
        function v3Swap(address pool, bool zeroForOne, int256 amountSpecified, uint160 sqrtPriceLimitX96) external returns (int256 amount0, int256 amount1);
        function v3Mint(address pool, int24 tickLower, int24 tickUpper, uint128 liquidity) external returns (uint256 amount0, uint256 amount1);
        function solidlySwap(address pool, address tokenIn, uint256 amountIn, uint256 amountOutMin, address to) external returns (uint256 amountOut);
    }
}
