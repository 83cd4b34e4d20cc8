// The GraphQL Yoga peer of switchboard-load: GraphQL Yoga executing, and
// graphql-ws on ws serving graphql-transport-ws, as Yoga's documentation
// sets them up. One subscription and one publishing mutation, with an
// event shaped like the gateway's integrationEvents (the fields the load
// command subscribes to). It is a yardstick, not part of the gateway.
//
//   node server.mjs            listens on 127.0.0.1:0, prints "LISTEN host:port"
//
//   POST /graphql              mutation { publish(kind: "CONFIGURED") { revision } }
//   GET  /graphql (websocket)  subscription { integrationEvents { revision at kind integration { id status badge { label tone } } } }
//   GET  /metrics              the process's heap, Prometheus text
//
// The load command reads RSS from /proc/<pid>/status of this process.
import { createServer } from 'node:http';
import { performance } from 'node:perf_hooks';
import { createPubSub, createSchema, createYoga } from 'graphql-yoga';
import { useServer } from 'graphql-ws/use/ws';
import { WebSocketServer } from 'ws';

const pubSub = createPubSub();
let revision = 0;

// now returns the wall clock as RFC 3339 with microseconds, as the Go
// baselines stamp `at` (Date has only milliseconds).
function now() {
  const ms = performance.timeOrigin + performance.now();
  const whole = Math.floor(ms);
  const micros = Math.floor((ms - whole) * 1000);
  const iso = new Date(whole).toISOString(); // 2006-01-02T15:04:05.000Z
  return iso.slice(0, 23) + String(micros).padStart(3, '0') + 'Z';
}

const schema = createSchema({
  typeDefs: /* GraphQL */ `
    type Badge { label: String! tone: String! }
    type Card { id: ID! status: String! badge: Badge! }
    type Event { revision: String! at: String! kind: String! integration: Card! }
    type Query { ping: Boolean! }
    type Mutation { publish(kind: String!): Event! }
    type Subscription { integrationEvents: Event! }
  `,
  resolvers: {
    Query: { ping: () => true },
    Mutation: {
      publish(_, { kind }) {
        revision++;
        const ev = {
          revision: String(revision),
          at: now(),
          kind,
          integration: { id: 'int_baseline', status: 'CONNECTED', badge: { label: 'Connected', tone: 'SUCCESS' } },
        };
        pubSub.publish('event', ev);
        return ev;
      },
    },
    Subscription: {
      integrationEvents: {
        subscribe: () => pubSub.subscribe('event'),
        resolve: (ev) => ev,
      },
    },
  },
});

const yoga = createYoga({ schema, graphqlEndpoint: '/graphql', graphiql: false, logging: false, maskedErrors: false });

const server = createServer((req, res) => {
  if (req.method === 'GET' && req.url === '/metrics') {
    const m = process.memoryUsage();
    res.writeHead(200, { 'Content-Type': 'text/plain; version=0.0.4' });
    res.end(`nodejs_heap_used_bytes ${m.heapUsed}\nnodejs_heap_total_bytes ${m.heapTotal}\nnodejs_external_bytes ${m.external}\n`);
    return;
  }
  yoga(req, res);
});

const wss = new WebSocketServer({ server, path: yoga.graphqlEndpoint });

// Yoga's documented graphql-ws integration: Yoga's envelop parses,
// validates and executes every operation the websocket carries.
useServer(
  {
    execute: (args) => args.rootValue.execute(args),
    subscribe: (args) => args.rootValue.subscribe(args),
    onSubscribe: async (ctx, _id, params) => {
      const { schema, execute, subscribe, contextFactory, parse, validate } = yoga.getEnveloped({
        ...ctx,
        req: ctx.extra.request,
        socket: ctx.extra.socket,
        params,
      });
      const args = {
        schema,
        operationName: params.operationName,
        document: parse(params.query),
        variableValues: params.variables,
        contextValue: await contextFactory(),
        rootValue: { execute, subscribe },
      };
      const errors = validate(args.schema, args.document);
      if (errors.length) return errors;
      return args;
    },
  },
  wss,
);

server.listen(0, '127.0.0.1', () => {
  const { address, port } = server.address();
  process.stdout.write(`LISTEN ${address}:${port}\n`);
});

for (const sig of ['SIGTERM', 'SIGINT']) {
  process.on(sig, () => process.exit(0));
}
