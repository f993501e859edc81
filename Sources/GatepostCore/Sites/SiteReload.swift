/// What a reload of `sites/` means for a running daemon, as a pure function: a site whose file
/// was edited badly keeps running in its last good version (a typo must never stop a partner),
/// and what changed is said once.
public struct SiteReload: Sendable {
    /// The sites to run: the new good ones, plus the last good version of each site whose file
    /// is now broken.
    public var directory: SiteDirectory
    /// Sites running their last good version, with the error of their file.
    public var keptLastGood: [(site: String, error: SiteConfigurationError)]
    /// Sites whose file loads again (or loaded all along): their configuration error is gone.
    public var loading: [String]
    public var added: [String]
    public var removed: [String]
    public var changed: [String]

    public init(previous: SiteDirectory, loaded: SiteDirectory) {
        var sites = loaded.sites
        var kept: [(String, SiteConfigurationError)] = []
        for error in loaded.errors {
            // Every site the broken file defined before (one, or one per tenant) keeps running.
            for site in previous.sites where site.sourceFile == error.file && loaded.site(named: site.name) == nil {
                sites.append(site)
                kept.append((site.name, error))
            }
        }
        directory = SiteDirectory(sites: sites, errors: loaded.errors, local: loaded.local ?? previous.local)
        keptLastGood = kept
        loading = loaded.sites.map(\.name)
        let before = Dictionary(previous.sites.map { ($0.name, $0) }, uniquingKeysWith: { first, _ in first })
        let after = Dictionary(sites.map { ($0.name, $0) }, uniquingKeysWith: { first, _ in first })
        added = after.keys.filter { before[$0] == nil }.sorted()
        removed = before.keys.filter { after[$0] == nil }.sorted()
        changed = after.keys.filter { name in before[name].map { $0 != after[name] } ?? false }.sorted()
    }
}
