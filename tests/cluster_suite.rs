//! The behaviour suite on a real Redis Cluster, cluster layout: one cluster of 3 masters is
//! started for the whole binary (`TestCluster::shared`) and every case keeps to tenants named
//! after it; the fault cases start clusters of their own (3 masters and 3 replicas for the
//! failover, 3 masters for the slot moves). The cases are modules in `tests/cluster_cases/`.

mod support;

#[path = "cluster_cases/basics.rs"]
mod basics;
#[path = "cluster_cases/common.rs"]
mod common;
#[path = "cluster_cases/crud.rs"]
mod crud;
#[path = "cluster_cases/faults.rs"]
mod faults;
#[path = "cluster_cases/queries.rs"]
mod queries;
#[path = "cluster_cases/shared.rs"]
mod shared;
#[path = "cluster_cases/shared_feed.rs"]
mod shared_feed;
#[path = "cluster_cases/shared_relayout.rs"]
mod shared_relayout;
#[path = "cluster_cases/shared_relayout_pages.rs"]
mod shared_relayout_pages;
#[path = "cluster_cases/tenancy.rs"]
mod tenancy;
