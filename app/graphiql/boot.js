// GraphiQL for Context Graph, served with every asset from this server (no CDN: it works offline
// and under a Content-Security-Policy of 'self'). Queries go to this page's URL; subscriptions
// to the same URL over graphql-transport-ws.
const EXAMPLE_QUERY = `# Context Graph. Credentials go in the Headers tab below:
#   {"Authorization": "Bearer <access token>"}
#   (with "X-Workspace-Id" when you have several)
#   or {"X-API-Key": "<key>"}
# then run this with Ctrl-Enter.
query FirstContacts {
  contacts(first: 10) {
    edges { node { id fullName email company } }
    pageInfo { hasNextPage endCursor }
  }
}
`;

const parameters = Object.fromEntries(new URLSearchParams(window.location.search));

function updateURL(data) {
  Object.assign(parameters, data);
  const search = new URLSearchParams(Object.entries(parameters).filter(([, value]) => Boolean(value)));
  history.replaceState(null, "", "?" + search.toString());
}

const fetchURL = window.location.href.split("?")[0];
const subscriptionURL = new URL(fetchURL);
subscriptionURL.protocol = subscriptionURL.protocol === "https:" ? "wss:" : "ws:";
subscriptionURL.hash = "";

const fetcher = GraphiQL.createFetcher({ url: fetchURL, subscriptionUrl: subscriptionURL.toString() });

function ContextGraphIDE() {
  const [query, setQuery] = React.useState(parameters.q || EXAMPLE_QUERY);
  const [variables, setVariables] = React.useState(parameters.variables);
  const [headers, setHeaders] = React.useState(parameters.headers);
  return React.createElement(GraphiQL, {
    fetcher,
    defaultEditorToolsVisibility: true,
    plugins: [GraphiQLPluginExplorer.explorerPlugin()],
    query,
    variables,
    headers,
    onEditQuery: (q) => { setQuery(q); updateURL({ q }); },
    onEditVariables: (v) => { setVariables(v); updateURL({ variables: v }); },
    onEditHeaders: setHeaders,
    inputValueDeprecation: true,
    isHeadersEditorEnabled: true,
    shouldPersistHeaders: true,
  });
}

ReactDOM.createRoot(document.getElementById("graphiql")).render(React.createElement(ContextGraphIDE));
