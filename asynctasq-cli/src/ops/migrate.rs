//! `migrate`: create or upgrade the schema of the SQL backends.

use anyhow::{Context, bail};
use asynctasq_core::DriverError;

/// `migrate [--dry-run]`: lists the pending migrations, then (unless a dry run) applies them.
pub(crate) async fn migrate(backend: &crate::BackendArgs, dry_run: bool) -> anyhow::Result<()> {
    let driver = crate::connect(backend, false).await?;
    let schema = match driver.server_info().await {
        Ok(info) => info.schema,
        Err(DriverError::Unsupported(_)) => None,
        Err(e) => return Err(e).context("cannot read the schema's migrations"),
    };
    let Some(schema) = schema else {
        outln!("nothing to migrate: {} keeps no schema", driver.name());
        return Ok(());
    };
    drop(driver);
    if schema.pending.is_empty() {
        outln!("schema is up to date ({} migrations applied)", schema.applied.len());
        return Ok(());
    }
    let verb = if dry_run { "would apply" } else { "applying" };
    for (version, description) in &schema.pending {
        outln!("{verb} {version:04} {description}");
    }
    if dry_run {
        outln!("dry run: nothing changed ({} pending; run `{}` to apply)", schema.pending.len(), crate::this_command("migrate"));
        return Ok(());
    }
    let driver = crate::connect(backend, true).await?;
    let after = driver.server_info().await.context("cannot read the schema's migrations")?.schema.unwrap_or_default();
    if !after.pending.is_empty() {
        bail!("{} migrations still pending after migrating", after.pending.len());
    }
    outln!("schema is up to date ({} migrations applied)", after.applied.len());
    Ok(())
}
