//! The devnet's live-mode operator: a fresh key in an encrypted keystore next to the manifest, an
//! executor contract (`contracts/DexlabExecutor.sol`) it owns, and funds to trade with.
//!
//! The key is derived from the seed, like everything on the devnet (the same seed mines the same
//! chain, set-up blocks included; a devnet key is no secret, as anvil's own accounts are not).
//! The keystore's password is random and sits in a file readable by its owner only; neither is
//! printed. Never use a devnet operator's key on a real chain. The operator's account gets [`OPERATOR_ETH`] for gas, and its executor
//! [`OPERATOR_USD_PER_TOKEN`] dollars' worth of every devnet token at the devnet's opening prices.

use std::path::Path;

use alloy::primitives::U256;
use alloy::providers::ext::AnvilApi;
use alloy::signers::local::PrivateKeySigner;
use alloy::sol_types::SolCall;

use super::bindings::ITestToken;
use super::deploy::{DEPLOYER, Deployment};
use crate::error::{DataError, Result};
use crate::manifest::OperatorInfo;

/// The operator account's native balance, wei (100 ETH).
pub const OPERATOR_ETH: u128 = 100_000_000_000_000_000_000;
/// What the executor holds of each token at the start, in dollars at the opening prices.
pub const OPERATOR_USD_PER_TOKEN: f64 = 25_000.0;

/// Makes the operator: its keystore and password file in `dir` (named after `stem`), its
/// account funded, its executor deployed and funded. Mines the blocks that takes.
pub(super) async fn setup(
    d: &mut Deployment,
    seed: u64,
    dir: &Path,
    stem: &str,
) -> Result<OperatorInfo> {
    let err = |m: String| DataError::Devnet(format!("operator: {m}"));
    let mut material = b"dexlab devnet operator".to_vec();
    material.extend(seed.to_be_bytes());
    let key = PrivateKeySigner::from_bytes(&alloy::primitives::keccak256(&material))
        .map_err(|e| err(format!("deriving the key: {e}")))?;
    let address = key.address();
    let mut password = [0u8; 24];
    rand08::RngCore::fill_bytes(&mut rand08::rngs::OsRng, &mut password);
    let password = alloy::primitives::hex::encode(password);
    let keystore = dir.join(format!("{stem}.operator.json"));
    let password_file = dir.join(format!("{stem}.operator.password"));
    write_private(&password_file, password.as_bytes())
        .map_err(|e| err(format!("{}: {e}", password_file.display())))?;
    PrivateKeySigner::encrypt_keystore(
        dir,
        &mut rand08::rngs::OsRng,
        key.to_bytes(),
        &password,
        Some(&format!("{stem}.operator.json")),
    )
    .map_err(|e| err(format!("writing the keystore in {}: {e}", dir.display())))?;
    let rpc = |e: alloy::transports::TransportError| err(e.to_string());
    d.provider
        .anvil_set_balance(address, U256::from(OPERATOR_ETH))
        .await
        .map_err(rpc)?;
    // The executor's owner is whoever deploys it: the node lets the devnet send as the operator
    // for this one transaction, which is what the operator's own signed deployment would do.
    d.provider
        .anvil_impersonate_account(address)
        .await
        .map_err(rpc)?;
    let executor = d
        .deploy_code(
            address,
            "DexlabExecutor",
            Vec::new(),
            3_000_000,
            "deploy the executor",
        )
        .await?;
    d.mine_checked().await?;
    d.provider
        .anvil_stop_impersonating_account(address)
        .await
        .map_err(rpc)?;
    let minter = d.accounts[DEPLOYER];
    for (t, usd) in d.tokens.clone().into_iter().zip(d.usd.clone()) {
        let units = (OPERATOR_USD_PER_TOKEN / usd).max(0.0);
        // Whole milli-units: exact in integers from here on.
        let milli = U256::from((units * 1000.0).round() as u128);
        let amount = milli * U256::from(10u64).pow(U256::from(t.decimals)) / U256::from(1000u64);
        d.send(
            minter,
            Some(t.address),
            ITestToken::mintCall {
                to: executor,
                amount,
            }
            .abi_encode(),
            100_000,
            "fund the executor",
        )
        .await?;
    }
    d.mine_checked().await?;
    Ok(OperatorInfo {
        address,
        executor,
        keystore,
        password_file: Some(password_file),
    })
}

/// Writes a file only its owner may read.
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}
