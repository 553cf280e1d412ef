// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

/// @notice The leading fields every V3-style pool shares (Uniswap V3, PancakeSwap V3, Slipstream):
/// a tick's gross and net liquidity come first in each pool's `ticks()`.
interface IV3TickState {
    function tickBitmap(int16 wordPosition) external view returns (uint256);
    function ticks(int24 tick) external view returns (uint128 liquidityGross, int128 liquidityNet);
}

/// @title DexlabTickLens
/// @notice Reads every initialized tick of a V3-style pool in one `eth_call`: never deployed, its runtime code is put
/// at a scratch address by a state override for the call. What a client would otherwise ask in one call per tick
/// bitmap word (3,466 of them at tick spacing 1) and one per initialized tick.
contract DexlabTickLens {
    /// @notice The initialized ticks of `pool` (tick spacing `spacing`), lowest first, with their gross and net
    /// liquidity; the bitmap words read are those of the whole tick range, as the client's own reading would.
    function ticks(address pool, int24 spacing)
        external
        view
        returns (int24[] memory tick, uint128[] memory gross, int128[] memory net)
    {
        require(spacing > 0, "spacing");
        int256 maxWord = (int256(887272) / int256(spacing)) >> 8;
        int256 lo = -maxWord - 1;
        (uint256[] memory bitmaps, uint256 count) = _bitmaps(pool, lo, uint256(maxWord - lo + 1));
        tick = new int24[](count);
        gross = new uint128[](count);
        net = new int128[](count);
        uint256 k;
        for (uint256 i; i < bitmaps.length; ++i) {
            k = _word(pool, spacing, lo + int256(i), bitmaps[i], k, tick, gross, net);
        }
    }

    /// @dev Every bitmap word from `lo`, and how many bits are set in all.
    function _bitmaps(address pool, int256 lo, uint256 n) private view returns (uint256[] memory words, uint256 count) {
        words = new uint256[](n);
        for (uint256 i; i < n; ++i) {
            uint256 b = IV3TickState(pool).tickBitmap(int16(lo + int256(i)));
            words[i] = b;
            while (b != 0) {
                b &= b - 1;
                ++count;
            }
        }
    }

    /// @dev The ticks of one bitmap word, written from index `k`; returns the next index.
    function _word(
        address pool,
        int24 spacing,
        int256 word,
        uint256 b,
        uint256 k,
        int24[] memory tick,
        uint128[] memory gross,
        int128[] memory net
    ) private view returns (uint256) {
        for (uint256 bit; b != 0; ++bit) {
            if (b & (uint256(1) << bit) == 0) continue;
            b &= ~(uint256(1) << bit);
            int24 t = int24((word * 256 + int256(bit)) * int256(spacing));
            (uint128 g, int128 l) = IV3TickState(pool).ticks(t);
            tick[k] = t;
            gross[k] = g;
            net[k] = l;
            ++k;
        }
        return k;
    }
}
