// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

interface IDexlabV2Pair {
    function token0() external view returns (address);
    function token1() external view returns (address);
    function getReserves() external view returns (uint112 reserve0, uint112 reserve1, uint32 blockTimestampLast);
    function swap(uint256 amount0Out, uint256 amount1Out, address to, bytes calldata data) external;
    function mint(address to) external returns (uint256 liquidity);
}

/// @dev Aerodrome's (Solidly) pool quotes its own output, fee and curve (volatile or stable) included.
interface IDexlabSolidlyPool {
    function getAmountOut(uint256 amountIn, address tokenIn) external view returns (uint256);
}

/// @dev The subset shared by UniswapV3Pool, PancakeV3Pool and Slipstream's CLPool.
interface IDexlabV3Pool {
    function token0() external view returns (address);
    function token1() external view returns (address);
    function swap(address recipient, bool zeroForOne, int256 amountSpecified, uint160 sqrtPriceLimitX96, bytes calldata data)
        external
        returns (int256 amount0, int256 amount1);
    function mint(address recipient, int24 tickLower, int24 tickUpper, uint128 amount, bytes calldata data)
        external
        returns (uint256 amount0, uint256 amount1);
}

/// @title DexlabRouter
/// @notice Minimal router for devnet traders and tests. It exists because V2 pairs and V3 pools cannot be
/// used directly from an EOA: V2 needs tokens sent to the pair before `swap`/`mint` in the same transaction,
/// and V3 pools pay out first and then call back the caller for payment. This router does both for
/// Uniswap V2-style pairs and for Uniswap V3 / PancakeSwap V3 / Slipstream pools, and Aerodrome's Solidly pools. No owner, never holds funds: every
/// token moves straight from the caller (who must have approved this router) to the pair or pool.
contract DexlabRouter {
    /// @dev TickMath.MIN_SQRT_RATIO and MAX_SQRT_RATIO (identical in Uniswap V3 and PancakeSwap V3).
    uint160 internal constant MIN_SQRT_RATIO = 4295128739;
    uint160 internal constant MAX_SQRT_RATIO = 1461446703485210103287273052203988822378723970342;

    /// @dev The V3 pool being called and who pays it; set only for the duration of v3Swap/v3Mint, so a
    /// callback is accepted only from that pool and can only charge the caller who chose that pool.
    address private activePool;
    address private activePayer;

    modifier v3Call(address pool) {
        require(activePool == address(0), "DexlabRouter: reentrant");
        activePool = pool;
        activePayer = msg.sender;
        _;
        activePool = address(0);
        activePayer = address(0);
    }

    // ---------------------------------------------------------------- V2

    /// @notice Exact-input swap on a V2-style pair. `feeBps` is the pair's swap fee in basis points
    /// (30 for Uniswap V2, whose pair hard-codes 0.3%); the output is
    /// amountIn*(10000-feeBps)*rOut / (rIn*10000 + amountIn*(10000-feeBps)).
    function v2Swap(address pair, address tokenIn, uint256 amountIn, uint256 amountOutMin, address to, uint16 feeBps)
        external
        returns (uint256 amountOut)
    {
        bool zeroForOne;
        (amountOut, zeroForOne) = _v2AmountOut(IDexlabV2Pair(pair), tokenIn, amountIn, feeBps);
        require(amountOut >= amountOutMin, "DexlabRouter: insufficient output");

        _pull(tokenIn, msg.sender, pair, amountIn);
        (uint256 out0, uint256 out1) = zeroForOne ? (uint256(0), amountOut) : (amountOut, uint256(0));
        IDexlabV2Pair(pair).swap(out0, out1, to, "");
    }

    function _v2AmountOut(IDexlabV2Pair pair, address tokenIn, uint256 amountIn, uint16 feeBps)
        private
        view
        returns (uint256 amountOut, bool zeroForOne)
    {
        require(feeBps < 10000, "DexlabRouter: bad fee");
        zeroForOne = tokenIn == pair.token0();
        require(zeroForOne || tokenIn == pair.token1(), "DexlabRouter: token not in pair");
        (uint256 r0, uint256 r1,) = pair.getReserves();
        (uint256 rIn, uint256 rOut) = zeroForOne ? (r0, r1) : (r1, r0);
        require(amountIn > 0 && rIn > 0 && rOut > 0, "DexlabRouter: no amount or liquidity");
        uint256 amountInWithFee = amountIn * (10000 - feeBps);
        amountOut = (amountInWithFee * rOut) / (rIn * 10000 + amountInWithFee);
    }

    /// @notice Sends exactly `amountIn` of `tokenIn` to the pair and asks for exactly `amountOut` of the
    /// other token, with no formula of ours in between: the pair's own K check accepts or reverts.
    /// dexlab's exactness tests use it to show that the amounts its math computes are the limits.
    function v2SwapRaw(address pair, address tokenIn, uint256 amountIn, uint256 amountOut, address to) external {
        IDexlabV2Pair p = IDexlabV2Pair(pair);
        bool zeroForOne = tokenIn == p.token0();
        require(zeroForOne || tokenIn == p.token1(), "DexlabRouter: token not in pair");
        _pull(tokenIn, msg.sender, pair, amountIn);
        (uint256 out0, uint256 out1) = zeroForOne ? (uint256(0), amountOut) : (amountOut, uint256(0));
        p.swap(out0, out1, to, "");
    }

    /// @notice Exact-input swap on a Solidly pool (Aerodrome volatile or stable): the output is the pool's
    /// own `getAmountOut` at the moment of the swap, so earlier swaps in the same block cannot make it fail.
    function solidlySwap(address pool, address tokenIn, uint256 amountIn, uint256 amountOutMin, address to)
        external
        returns (uint256 amountOut)
    {
        IDexlabV2Pair p = IDexlabV2Pair(pool);
        bool zeroForOne = tokenIn == p.token0();
        require(zeroForOne || tokenIn == p.token1(), "DexlabRouter: token not in pair");
        amountOut = IDexlabSolidlyPool(pool).getAmountOut(amountIn, tokenIn);
        require(amountOut > 0 && amountOut >= amountOutMin, "DexlabRouter: insufficient output");
        _pull(tokenIn, msg.sender, pool, amountIn);
        (uint256 out0, uint256 out1) = zeroForOne ? (uint256(0), amountOut) : (amountOut, uint256(0));
        p.swap(out0, out1, to, "");
    }

    /// @notice Sends amount0 of token0 and amount1 of token1 from the caller to the pair and mints LP tokens to `to`.
    function v2AddLiquidity(address pair, uint256 amount0, uint256 amount1, address to)
        external
        returns (uint256 liquidity)
    {
        IDexlabV2Pair p = IDexlabV2Pair(pair);
        _pull(p.token0(), msg.sender, pair, amount0);
        _pull(p.token1(), msg.sender, pair, amount1);
        liquidity = p.mint(to);
    }

    // ---------------------------------------------------------------- V3 (Uniswap and PancakeSwap)

    /// @notice Swaps on a V3 pool; output goes to the caller, input is pulled from the caller in the callback.
    /// amountSpecified > 0 is exact input, < 0 exact output. A zero sqrtPriceLimitX96 means no limit.
    function v3Swap(address pool, bool zeroForOne, int256 amountSpecified, uint160 sqrtPriceLimitX96)
        external
        v3Call(pool)
        returns (int256 amount0, int256 amount1)
    {
        if (sqrtPriceLimitX96 == 0) {
            sqrtPriceLimitX96 = zeroForOne ? MIN_SQRT_RATIO + 1 : MAX_SQRT_RATIO - 1;
        }
        (amount0, amount1) = IDexlabV3Pool(pool).swap(
            msg.sender, zeroForOne, amountSpecified, sqrtPriceLimitX96, abi.encode(msg.sender)
        );
    }

    /// @notice Adds `liquidity` to the caller's position [tickLower, tickUpper) on a V3 pool, paid by the caller.
    function v3Mint(address pool, int24 tickLower, int24 tickUpper, uint128 liquidity)
        external
        v3Call(pool)
        returns (uint256 amount0, uint256 amount1)
    {
        (amount0, amount1) = IDexlabV3Pool(pool).mint(msg.sender, tickLower, tickUpper, liquidity, abi.encode(msg.sender));
    }

    function uniswapV3SwapCallback(int256 amount0Delta, int256 amount1Delta, bytes calldata data) external {
        _swapCallback(amount0Delta, amount1Delta, data);
    }

    function pancakeV3SwapCallback(int256 amount0Delta, int256 amount1Delta, bytes calldata data) external {
        _swapCallback(amount0Delta, amount1Delta, data);
    }

    function uniswapV3MintCallback(uint256 amount0Owed, uint256 amount1Owed, bytes calldata data) external {
        _pay(amount0Owed, amount1Owed, data);
    }

    function pancakeV3MintCallback(uint256 amount0Owed, uint256 amount1Owed, bytes calldata data) external {
        _pay(amount0Owed, amount1Owed, data);
    }

    function _swapCallback(int256 amount0Delta, int256 amount1Delta, bytes calldata data) private {
        _pay(amount0Delta > 0 ? uint256(amount0Delta) : 0, amount1Delta > 0 ? uint256(amount1Delta) : 0, data);
    }

    /// @dev Pays the active pool (msg.sender) from the payer recorded by v3Call. `data` must name that same
    /// payer; it is checked, never trusted, so a hostile "pool" can only charge the caller who chose it.
    function _pay(uint256 amount0, uint256 amount1, bytes calldata data) private {
        address pool = activePool;
        require(pool != address(0) && msg.sender == pool, "DexlabRouter: unexpected callback");
        address payer = activePayer;
        require(abi.decode(data, (address)) == payer, "DexlabRouter: bad callback data");
        if (amount0 > 0) _pull(IDexlabV3Pool(pool).token0(), payer, pool, amount0);
        if (amount1 > 0) _pull(IDexlabV3Pool(pool).token1(), payer, pool, amount1);
    }

    /// @dev transferFrom that accepts tokens returning nothing and rejects calls to addresses without code.
    function _pull(address token, address from, address to, uint256 amount) private {
        require(token.code.length > 0, "DexlabRouter: token has no code");
        (bool ok, bytes memory ret) = token.call(abi.encodeWithSelector(0x23b872dd, from, to, amount));
        require(ok && (ret.length == 0 || abi.decode(ret, (bool))), "DexlabRouter: transferFrom failed");
    }
}
