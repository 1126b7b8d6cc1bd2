// Validates CloudNativePG `Cluster` resources with the operator's own models: @kubernetes-models/cloudnative-pg
// generates its validators from CloudNativePG's CRDs (the openAPIV3Schema of postgresql.cnpg.io/v1).
// Reads a JSON array of resources on stdin; prints one JSON line per resource; exits 1 if any is invalid.
import { readFileSync } from "node:fs";
import { Cluster } from "@kubernetes-models/cloudnative-pg/postgresql.cnpg.io/v1/Cluster";

let invalid = 0;
for (const resource of JSON.parse(readFileSync(0, "utf8"))) {
  try {
    new Cluster(resource).validate();
    console.log(JSON.stringify({ name: resource.metadata?.name, valid: true }));
  } catch (error) {
    invalid += 1;
    console.log(JSON.stringify({ name: resource.metadata?.name, valid: false, error: error.message }));
  }
}
process.exit(invalid ? 1 : 0);
