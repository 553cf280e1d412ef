// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

interface IExecutorV2Pair {
    function getReserves() external view returns (uint112 reserve0, uint112 reserve1, uint32 blockTimestampLast);
    function swap(uint256 amount0Out, uint256 amount1Out, address to, bytes calldata data) external;
}

/// @dev Aerodrome's (Solidly) pool: the V2 swap, and its own quote (fee and volatile or stable curve).
interface IExecutorSolidlyPool {
    function getAmountOut(uint256 amountIn, address tokenIn) external view returns (uint256);
}

/// @dev The swap shared by Uniswap V3, PancakeSwap V3 and Aerodrome Slipstream pools.
interface IExecutorV3Pool {
    function swap(address recipient, bool zeroForOne, int256 amountSpecified, uint160 sqrtPriceLimitX96, bytes calldata data)
        external
        returns (int256 amount0, int256 amount1);
}

/// @title DexlabExecutor
/// @notice Carries out one dexlab bundle atomically: a chain of exact-input swaps where the first leg
/// sells `amountIn` of the executor's own tokens and every next leg sells the previous leg's whole
/// output. The call reverts, and nothing moves, unless every leg fills in full with a non-zero output,
/// the last output is at
/// least `minAmountOut` (for a cycle the engine sets it to the input plus the minimum profit), and the
/// block is at or before `deadline`.
/// @dev Owner-only. Tokens move by `transfer` from this contract straight to the pool it is trading
/// with; it never grants an approval. A V3 callback is accepted only from the pool of the leg being
/// executed, and only during that leg. `owner` is storage slot 0: a paper session's `eth_call` puts
/// this runtime code at an address of its choosing with a state override and sets slot 0 to its
/// caller, so the node simulates the very code that live trading sends bundles to.
contract DexlabExecutor {
    /// @dev Leg kinds: V2-style pairs, V3-style pools (Uniswap V3, PancakeSwap V3, Slipstream) and
    /// Solidly pools (Aerodrome volatile and stable).
    uint8 public constant KIND_V2 = 0;
    uint8 public constant KIND_V3 = 1;
    uint8 public constant KIND_SOLIDLY = 2;

    /// @dev TickMath.MIN_SQRT_RATIO and MAX_SQRT_RATIO (identical in every V3-style pool dexlab trades).
    uint160 internal constant MIN_SQRT_RATIO = 4295128739;
    uint160 internal constant MAX_SQRT_RATIO = 1461446703485210103287273052203988822378723970342;

    struct Leg {
        address pool;
        address tokenIn;
        uint8 kind;
        /// Sells token0 for token1.
        bool zeroForOne;
        /// V2 legs: the pair's fee in pips (3000 = 0.30 %), used to size the output.
        uint24 fee;
    }

    address public owner;
    /// @dev The V3 pool of the leg in progress and the token it is paid in; zero between legs.
    address private activePool;
    address private activeToken;

    error NotOwner();
    error Expired(uint256 deadline, uint256 blockNumber);
    error EmptyBundle();
    error BadLeg(uint256 index);
    error PartialFill(uint256 index, uint256 amountIn, uint256 taken);
    error ZeroOutput(uint256 index);
    error InsufficientOutput(uint256 amountOut, uint256 minAmountOut);
    error UnexpectedCallback(address caller);
    error TransferFailed(address token, address to, uint256 amount);

    constructor() {
        owner = msg.sender;
    }

    modifier onlyOwner() {
        if (msg.sender != owner) revert NotOwner();
        _;
    }

    /// @notice Executes a bundle; returns each leg's output (the last is the bundle's).
    function execute(Leg[] calldata legs, uint256 amountIn, uint256 minAmountOut, uint256 deadline)
        external
        onlyOwner
        returns (uint256[] memory amounts)
    {
        if (block.number > deadline) revert Expired(deadline, block.number);
        uint256 n = legs.length;
        if (n == 0 || amountIn == 0) revert EmptyBundle();
        amounts = new uint256[](n);
        uint256 amount = amountIn;
        for (uint256 i = 0; i < n; i++) {
            Leg calldata leg = legs[i];
            if (leg.kind == KIND_V2) {
                amount = _v2(leg, amount, i);
            } else if (leg.kind == KIND_V3) {
                amount = _v3(leg, amount, i);
            } else if (leg.kind == KIND_SOLIDLY) {
                amount = _solidly(leg, amount);
            } else {
                revert BadLeg(i);
            }
            if (amount == 0) revert ZeroOutput(i);
            amounts[i] = amount;
        }
        if (amount < minAmountOut) revert InsufficientOutput(amount, minAmountOut);
    }

    /// @dev Exact input on a V2-style pair: UniswapV2Library's getAmountOut with the fee in pips, then
    /// transfer-and-swap. The pair's own K check is the judge.
    function _v2(Leg calldata leg, uint256 amountIn, uint256 i) private returns (uint256 amountOut) {
        if (leg.fee >= 1_000_000) revert BadLeg(i);
        (uint256 r0, uint256 r1,) = IExecutorV2Pair(leg.pool).getReserves();
        (uint256 rIn, uint256 rOut) = leg.zeroForOne ? (r0, r1) : (r1, r0);
        uint256 inWithFee = amountIn * (1_000_000 - leg.fee);
        amountOut = (inWithFee * rOut) / (rIn * 1_000_000 + inWithFee);
        _transfer(leg.tokenIn, leg.pool, amountIn);
        (uint256 out0, uint256 out1) = leg.zeroForOne ? (uint256(0), amountOut) : (amountOut, uint256(0));
        IExecutorV2Pair(leg.pool).swap(out0, out1, address(this), "");
    }

    /// @dev Exact input on a Solidly pool: the pool's own `getAmountOut` (its fee, and the stable curve's
    /// Newton solve), then transfer-and-swap; the pool's K check is the judge.
    function _solidly(Leg calldata leg, uint256 amountIn) private returns (uint256 amountOut) {
        amountOut = IExecutorSolidlyPool(leg.pool).getAmountOut(amountIn, leg.tokenIn);
        _transfer(leg.tokenIn, leg.pool, amountIn);
        (uint256 out0, uint256 out1) = leg.zeroForOne ? (uint256(0), amountOut) : (amountOut, uint256(0));
        IExecutorV2Pair(leg.pool).swap(out0, out1, address(this), "");
    }

    /// @dev Exact input on a V3-style pool with no price limit; the pool pays first and calls back for
    /// its input. A swap that stops short of the full input (the pool ran out of liquidity) reverts.
    function _v3(Leg calldata leg, uint256 amountIn, uint256 i) private returns (uint256 amountOut) {
        if (amountIn > uint256(type(int256).max)) revert BadLeg(i);
        activePool = leg.pool;
        activeToken = leg.tokenIn;
        (int256 a0, int256 a1) = IExecutorV3Pool(leg.pool).swap(
            address(this),
            leg.zeroForOne,
            int256(amountIn),
            leg.zeroForOne ? MIN_SQRT_RATIO + 1 : MAX_SQRT_RATIO - 1,
            ""
        );
        activePool = address(0);
        activeToken = address(0);
        (int256 taken, int256 given) = leg.zeroForOne ? (a0, a1) : (a1, a0);
        if (taken != int256(amountIn)) revert PartialFill(i, amountIn, taken < 0 ? 0 : uint256(taken));
        amountOut = uint256(-given);
    }

    function uniswapV3SwapCallback(int256 amount0Delta, int256 amount1Delta, bytes calldata) external {
        _pay(amount0Delta, amount1Delta);
    }

    function pancakeV3SwapCallback(int256 amount0Delta, int256 amount1Delta, bytes calldata) external {
        _pay(amount0Delta, amount1Delta);
    }

    function _pay(int256 amount0Delta, int256 amount1Delta) private {
        address pool = activePool;
        if (pool == address(0) || msg.sender != pool) revert UnexpectedCallback(msg.sender);
        uint256 owed = uint256(amount0Delta > 0 ? amount0Delta : amount1Delta);
        _transfer(activeToken, pool, owed);
    }

    /// @notice Sends `amount` of `token` held here to `to`.
    function withdraw(address token, address to, uint256 amount) external onlyOwner {
        _transfer(token, to, amount);
    }

    /// @notice Sends `amount` wei held here to `to`.
    function withdrawEth(address payable to, uint256 amount) external onlyOwner {
        (bool ok,) = to.call{value: amount}("");
        if (!ok) revert TransferFailed(address(0), to, amount);
    }

    receive() external payable {}

    /// @dev transfer that accepts tokens returning nothing and rejects addresses without code.
    function _transfer(address token, address to, uint256 amount) private {
        if (token.code.length == 0) revert TransferFailed(token, to, amount);
        (bool ok, bytes memory ret) = token.call(abi.encodeWithSelector(0xa9059cbb, to, amount));
        if (!ok || (ret.length != 0 && !abi.decode(ret, (bool)))) revert TransferFailed(token, to, amount);
    }
}
