//! `dexlab executor deploy` on a living devnet: the operator's key from the environment, the
//! contract deployed and owned by it, and the key in no output; a missing or malformed key is a
//! clear error that does not echo it.

use alloy::primitives::{Address, U256};
use alloy::providers::{Provider, ProviderBuilder, ext::AnvilApi};
use alloy::signers::local::PrivateKeySigner;
use alloy::sol_types::SolCall;

use crate::support::*;

alloy::sol! {
    function owner() external view returns (address);
}

#[test]
fn the_executor_is_deployed_by_the_operators_key_which_no_output_shows() {
    let chain = Chain::up_live(6, 30, 100);
    let rpc = format!("http://127.0.0.1:{}", chain.port);
    let key = PrivateKeySigner::random();
    let secret = alloy::primitives::hex::encode(key.to_bytes());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let p = rt.block_on(async { ProviderBuilder::new().connect(&rpc).await.unwrap().erased() });
    rt.block_on(p.anvil_set_balance(key.address(), U256::from(10u64).pow(U256::from(19))))
        .unwrap();

    let o = dexlab()
        .args(["executor", "deploy", "--rpc", &rpc, "--json"])
        .env("DEXLAB_PRIVATE_KEY", format!("0x{secret}"))
        .output()
        .unwrap();
    let (out, err) = (
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr),
    );
    assert!(o.status.success(), "{out}\n{err}");
    assert!(!out.contains(&secret) && !err.contains(&secret));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let exec: Address = v["executor"].as_str().unwrap().parse().unwrap();
    assert_eq!(
        v["owner"].as_str().unwrap().parse::<Address>().unwrap(),
        key.address()
    );
    let call = alloy::rpc::types::TransactionRequest::default()
        .to(exec)
        .input(ownerCall {}.abi_encode().into());
    let ret = rt.block_on(async { p.call(call).await }).unwrap();
    assert_eq!(ownerCall::abi_decode_returns(&ret).unwrap(), key.address());

    // A malformed key is refused by name, its text not echoed; no key at all says where to put one.
    let half = &secret[..40];
    let o = dexlab()
        .args(["executor", "deploy", "--rpc", &rpc])
        .env("DEXLAB_PRIVATE_KEY", half)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        err.contains("DEXLAB_PRIVATE_KEY") && !err.contains(half),
        "{err}"
    );
    let o = dexlab()
        .args(["executor", "deploy", "--rpc", &rpc])
        .env_remove("DEXLAB_PRIVATE_KEY")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("is not set"), "{err}");
}
