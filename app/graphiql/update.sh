#!/usr/bin/env bash
# Copies GraphiQL's files from the npm registry's packages into this folder.
#   app/graphiql/update.sh [REACT_VERSION] [GRAPHIQL_VERSION] [EXPLORER_VERSION]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
react="${1:-18.2.0}" graphiql="${2:-3.8.3}" explorer="${3:-1.0.2}"
work="$(mktemp -d)"; trap 'rm -rf "$work"' EXIT
cd "$work"
npm pack -q "react@$react" "react-dom@$react" "graphiql@$graphiql" "@graphiql/plugin-explorer@$explorer" >/dev/null
for archive in *.tgz; do mkdir "${archive%.tgz}"; tar xzf "$archive" -C "${archive%.tgz}"; done
cp react-"$react"/package/umd/react.production.min.js react-dom-"$react"/package/umd/react-dom.production.min.js "$here/"
cp graphiql-"$graphiql"/package/graphiql.min.js graphiql-"$graphiql"/package/graphiql.min.css "$here/"
cp graphiql-plugin-explorer-"$explorer"/package/dist/index.umd.js "$here/plugin-explorer.umd.js"
cp graphiql-plugin-explorer-"$explorer"/package/dist/style.css "$here/plugin-explorer.css"
cp react-"$react"/package/LICENSE "$here/licenses/react.LICENSE"
cp react-dom-"$react"/package/LICENSE "$here/licenses/react-dom.LICENSE"
cp graphiql-"$graphiql"/package/LICENSE "$here/licenses/graphiql.LICENSE"
cp graphiql-"$graphiql"/package/LICENSE "$here/licenses/plugin-explorer.LICENSE"
echo "GraphiQL files updated: react $react, graphiql $graphiql, plugin-explorer $explorer"
