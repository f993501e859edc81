import Foundation
import GatepostCatalog
import PostgresNIO

// MARK: LeaseStore

extension PostgresCatalog {
    public func heartbeat(_ node: ClusterNode) async throws -> [ClusterNode] {
        try await transaction("record a node's heartbeat") { connection in
            // LeaseRules.mayBeat as one guarded upsert: over this instance's row or an expired
            // one only; a concurrent start under the same name waits for the row lock.
            let written = try await connection.count("""
                INSERT INTO cluster_node (name, instance, started_at, heartbeat_at, expires_at, console_url)
                VALUES (\(node.name), \(node.instance), \(Timestamp(node.startedAt)), \(Timestamp(node.heartbeatAt)),
                        \(Timestamp(node.expiresAt)), \(node.consoleURL))
                ON CONFLICT (name) DO UPDATE SET instance = excluded.instance, started_at = excluded.started_at,
                    heartbeat_at = excluded.heartbeat_at, expires_at = excluded.expires_at, console_url = excluded.console_url
                WHERE cluster_node.instance = excluded.instance OR cluster_node.expires_at <= excluded.heartbeat_at
                RETURNING name
                """, logger)
            if written == 0 {
                let holder = try await connection.rows("SELECT expires_at FROM cluster_node WHERE name = \(node.name)", logger).first
                throw ClusterError.nodeNameInUse(name: node.name, until: try holder?.time("expires_at") ?? node.expiresAt)
            }
            return try await connection.rows(
                "SELECT * FROM cluster_node WHERE expires_at > \(Timestamp(node.heartbeatAt)) ORDER BY name", logger
            ).map(Self.clusterNode)
        }
    }

    public func leave(node name: String, instance: String) async throws {
        try await transaction("record a node leaving") { connection in
            let removed = try await connection.count(
                "DELETE FROM cluster_node WHERE name = \(name) AND instance = \(instance) RETURNING name", logger
            )
            if removed > 0 {
                try await connection.run("DELETE FROM site_lease WHERE node = \(name)", logger)
            }
        }
    }

    public func claimSite(_ site: String, node: String, now: Date, until: Date) async throws -> Bool {
        try await autocommit("claim a site") { connection in
            // LeaseRules.mayClaim as one guarded upsert: of concurrent claimants, the others wait
            // for the row lock and then find it held.
            try await connection.count("""
                INSERT INTO site_lease (site, node, expires_at) VALUES (\(site), \(node), \(Timestamp(until)))
                ON CONFLICT (site) DO UPDATE SET node = excluded.node, expires_at = excluded.expires_at
                WHERE site_lease.node = excluded.node OR site_lease.expires_at <= \(Timestamp(now))
                RETURNING site
                """, logger) == 1
        }
    }

    public func releaseSite(_ site: String, node: String) async throws {
        try await autocommit("release a site") { connection in
            try await connection.run("DELETE FROM site_lease WHERE site = \(site) AND node = \(node)", logger)
        }
    }

    public func siteLeases() async throws -> [SiteLease] {
        try await autocommit("read the site leases") { connection in
            try await connection.rows("SELECT * FROM site_lease ORDER BY site", logger).map { row in
                SiteLease(site: try row.value("site"), node: try row.value("node"), expiresAt: try row.time("expires_at"))
            }
        }
    }

    public func clusterNodes() async throws -> [ClusterNode] {
        try await autocommit("read the nodes") { connection in
            try await connection.rows("SELECT * FROM cluster_node ORDER BY name", logger).map(Self.clusterNode)
        }
    }

    static func clusterNode(_ row: PostgresRandomAccessRow) throws -> ClusterNode {
        ClusterNode(
            name: try row.value("name"), instance: try row.value("instance"), startedAt: try row.time("started_at"),
            heartbeatAt: try row.time("heartbeat_at"), expiresAt: try row.time("expires_at"), consoleURL: try row.value("console_url")
        )
    }
}
