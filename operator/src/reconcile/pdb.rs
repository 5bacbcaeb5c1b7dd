//! The PodDisruptionBudget stage of apply: the budget server-side applied when the model has
//! one, and the operator's own budget deleted when it no longer should (`spec.disruption`
//! changed, or the replicas fell below two).

use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::Api;
use kube::runtime::events::EventType;

use super::apply::{apply, delete_if_owned};
use super::{Context, Error, events};
use crate::crd::ModelDeployment;
use crate::validate::Validated;

/// Applies `pdb` (the budget of `v`), or deletes the operator's budget of `v` when `None`.
pub(super) async fn apply_pdb(
    md: &ModelDeployment,
    v: &Validated,
    pdb: Option<&PodDisruptionBudget>,
    ctx: &Context,
) -> Result<(), Error> {
    let api = Api::<PodDisruptionBudget>::namespaced(ctx.client.clone(), &v.namespace);
    if let Some(pdb) = pdb {
        apply(api, &v.name, pdb).await?;
        return Ok(());
    }
    let Some(existing) = ctx.caches.pdb_of(&v.namespace, &v.name) else {
        return Ok(());
    };
    let deleted = delete_if_owned(&api, &v.name, &v.uid, existing.as_ref())
        .await
        .map_err(|source| Error::Delete {
            kind: "PodDisruptionBudget".into(),
            name: v.name.clone(),
            source,
        })?;
    if deleted {
        events::publish(
            md,
            ctx,
            EventType::Normal,
            "DisruptionBudgetRemoved",
            format!(
                "deleted PodDisruptionBudget {}: the model no longer asks for one",
                v.name
            ),
        )
        .await;
    }
    Ok(())
}
