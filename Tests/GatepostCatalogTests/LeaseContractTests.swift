import Foundation
import Testing
@testable import GatepostCatalog

/// The contract of LeaseStore, held against every store, and the assignment of sites to nodes.
@Suite struct LeaseContractTests {
    static let now = Date(timeIntervalSince1970: 1_800_000_000)

    static func node(_ name: String, instance: String? = nil, at offset: TimeInterval = 0, ttl: TimeInterval = 30) -> ClusterNode {
        ClusterNode(
            name: name, instance: instance ?? "\(name)-1", startedAt: now, heartbeatAt: now.addingTimeInterval(offset),
            expiresAt: now.addingTimeInterval(offset + ttl), consoleURL: "http://\(name):8080"
        )
    }

    @Test(arguments: CatalogStore.allCases)
    func nodesBeatJoinAndLeave(_ store: CatalogStore) async throws {
        let catalog = try await store.make()
        #expect(try await catalog.heartbeat(Self.node("b")).map(\.name) == ["b"])
        #expect(try await catalog.heartbeat(Self.node("a")) == [Self.node("a"), Self.node("b")])
        // A second process under a live name is refused, and changes nothing.
        await #expect(throws: ClusterError.nodeNameInUse(name: "a", until: Self.now.addingTimeInterval(30))) {
            try await catalog.heartbeat(Self.node("a", instance: "a-2", at: 10))
        }
        #expect(try await catalog.clusterNodes().first?.instance == "a-1")
        // b stops beating: at +40 it is no longer alive, and its name is free for a new run.
        #expect(try await catalog.heartbeat(Self.node("a", at: 40)).map(\.name) == ["a"])
        #expect(try await catalog.heartbeat(Self.node("b", instance: "b-2", at: 41)).map(\.name) == ["a", "b"])
        #expect(try await catalog.clusterNodes().map(\.instance) == ["a-1", "b-2"])
        // Leaving drops the row and the node's leases; another instance's leave does nothing.
        #expect(try await catalog.claimSite("acme", node: "a", now: Self.now, until: Self.now.addingTimeInterval(60)))
        try await catalog.leave(node: "a", instance: "a-9")
        #expect(try await catalog.clusterNodes().count == 2)
        try await catalog.leave(node: "a", instance: "a-1")
        #expect(try await catalog.clusterNodes().map(\.name) == ["b"])
        #expect(try await catalog.siteLeases().isEmpty)
    }

    @Test(arguments: CatalogStore.allCases)
    func aSiteIsHeldByOneNodeUntilItsLeaseEnds(_ store: CatalogStore) async throws {
        let catalog = try await store.make()
        let later = Self.now.addingTimeInterval(60)
        #expect(try await catalog.claimSite("acme", node: "a", now: Self.now, until: later))
        #expect(try await !catalog.claimSite("acme", node: "b", now: Self.now.addingTimeInterval(59), until: later.addingTimeInterval(59)))
        // Renewing is claiming again.
        #expect(try await catalog.claimSite("acme", node: "a", now: Self.now.addingTimeInterval(30), until: later.addingTimeInterval(30)))
        #expect(try await !catalog.claimSite("acme", node: "b", now: later.addingTimeInterval(29), until: later.addingTimeInterval(90)))
        #expect(try await catalog.siteLeases() == [SiteLease(site: "acme", node: "a", expiresAt: later.addingTimeInterval(30))])
        // Expired: b takes it over, and a's release no longer touches it.
        #expect(try await catalog.claimSite("acme", node: "b", now: later.addingTimeInterval(30), until: later.addingTimeInterval(90)))
        try await catalog.releaseSite("acme", node: "a")
        #expect(try await catalog.siteLeases().map(\.node) == ["b"])
        try await catalog.releaseSite("acme", node: "b")
        #expect(try await catalog.siteLeases().isEmpty)
        #expect(try await catalog.claimSite("acme", node: "c", now: Self.now, until: later))
    }

    /// Many claimants at once: exactly one holds the site.
    @Test(arguments: CatalogStore.allCases)
    func concurrentClaimsHaveOneWinner(_ store: CatalogStore) async throws {
        let catalog = try await store.make()
        let winners = try await withThrowingTaskGroup(of: Bool.self) { group in
            for index in 0 ..< 16 {
                group.addTask {
                    try await catalog.claimSite("acme", node: "n\(index)", now: Self.now, until: Self.now.addingTimeInterval(60))
                }
            }
            return try await group.reduce(0) { $0 + ($1 ? 1 : 0) }
        }
        #expect(winners == 1)
    }

    @Test func sitesSpreadEvenlyAndOnlyADeadNodesSitesMove() {
        let sites = (1 ... 300).map { "site-\($0)" }
        let nodes = ["node-a", "node-b", "node-c"]
        let owners = Dictionary(uniqueKeysWithValues: sites.map { ($0, SiteAssignment.owner(of: $0, among: nodes)) })
        for node in nodes {
            let count = owners.values.filter { $0 == node }.count
            #expect((70 ... 130).contains(count), "\(node): \(count) of 300")
        }
        // The order of the list does not matter; every node computes the same owner.
        #expect(sites.allSatisfy { owners[$0] == SiteAssignment.owner(of: $0, among: nodes.reversed()) })
        // node-b dies: its sites go to the others, and no other site moves.
        for site in sites {
            let after = SiteAssignment.owner(of: site, among: ["node-a", "node-c"])
            if owners[site] == "node-b" {
                #expect(after != nil)
            } else {
                #expect(after == owners[site], "\(site) moved")
            }
        }
        #expect(SiteAssignment.owner(of: "acme", among: []) == nil)
    }
}
