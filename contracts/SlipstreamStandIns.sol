// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

interface ISlipstreamPoolStake {
    function stake(int128 stakedLiquidityDelta, int24 tickLower, int24 tickUpper, bool positionUpdate) external;
    function setGaugeAndPositionManager(address gauge, address nft) external;
}

/// @title SlipstreamVoterStandIn
/// @notice What Aerodrome Slipstream's CLFactory and CLPool ask of the rest of Aerodrome, and nothing
/// more, so that the published CLFactory and CLPool run unchanged on a devnet:
///  - the Voter: `factoryRegistry()` (read once by the CLFactory constructor), `gauges(pool)` and
///    `isAlive(gauge)` (read by `CLFactory.getUnstakedFee` on every swap);
///  - the FactoryRegistry: `factoriesToPoolFactory(factory)`, whose gauge factory is the only caller
///    a pool accepts for `setGaugeAndPositionManager` (here: this contract, on the owner's behalf);
///  - the legacy CL factory: `getPool(...)`, which must say "no pool" for `createPool` to be open.
/// It holds no funds and votes on nothing: a gauge here only marks liquidity as staked, which moves
/// the unstaked fee between LPs and the gauge and never changes what a swap pays.
contract SlipstreamVoterStandIn {
    address public immutable owner;
    mapping(address => address) public gauges;
    mapping(address => bool) public isAlive;

    constructor() {
        owner = msg.sender;
    }

    function factoryRegistry() external view returns (address) {
        return address(this);
    }

    function factoriesToPoolFactory(address) external view returns (address votingRewardsFactory, address gaugeFactory) {
        return (address(0), address(this));
    }

    function getPool(address, address, int24) external pure returns (address) {
        return address(0);
    }

    /// @notice Gives `pool` the gauge `gauge` (alive or not); `nft` is the pool's position manager.
    function setGauge(address pool, address gauge, address nft, bool alive) external {
        require(msg.sender == owner, "SlipstreamVoterStandIn: not owner");
        gauges[pool] = gauge;
        isAlive[gauge] = alive;
        ISlipstreamPoolStake(pool).setGaugeAndPositionManager(gauge, nft);
    }
}

/// @title SlipstreamGaugeStandIn
/// @notice Stakes and unstakes liquidity of a range in a Slipstream pool whose gauge it is, as
/// Aerodrome's CLGauge does when an LP deposits a position, without the rewards.
contract SlipstreamGaugeStandIn {
    address public immutable owner;

    constructor() {
        owner = msg.sender;
    }

    function stake(address pool, int128 liquidityDelta, int24 tickLower, int24 tickUpper) external {
        require(msg.sender == owner, "SlipstreamGaugeStandIn: not owner");
        ISlipstreamPoolStake(pool).stake(liquidityDelta, tickLower, tickUpper, false);
    }
}
