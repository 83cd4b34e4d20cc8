package switchboard

import "context"

// SubscribeNotify streams the viewer's workspace's events after
// afterRevision (nil: live only), optionally of one category, calling
// notify (SubscribeRequest.Notify) after each. Other users' personal
// integrations are never sent. With notify set the subscription also has
// EndByCall: the caller ends it with Subscription.End.
func (s *Service) SubscribeNotify(ctx context.Context, afterRevision *uint64, category *Category, notify func()) (*Subscription, error) {
	p, err := reader(ctx)
	if err != nil {
		return nil, err
	}
	uid := p.UserID
	return s.Broker.Subscribe(ctx, SubscribeRequest{
		WorkspaceID:   p.WorkspaceID,
		AfterRevision: afterRevision,
		Match: func(ev *Event) bool {
			in := ev.Integration
			if category != nil && in.Category != *category {
				return false
			}
			return in.OwnerUserID == "" || in.OwnerUserID == uid
		},
		Notify:    notify,
		EndByCall: notify != nil,
	})
}
