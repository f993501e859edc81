/// The version `gatepost --version` prints; raised with each release.
public enum GatepostVersion {
    public static let current = "0.14.0"
}
